"""Gumbel straight-through sampling, deterministic inference gates, and the temperature schedule."""

import math

import pytest
import torch

from hybridformer.config import ConfigError
from hybridformer.sparsity import (
    GatedFFN,
    SparseGate,
    SparsityConfig,
    gumbel_sigmoid_st,
    set_sparsity_step,
    set_temperature,
    target_at,
    temperature_at,
)


def test_samples_are_exact_zeros_and_ones_with_rate_sigmoid_logit():
    torch.manual_seed(0)
    logits = torch.tensor([-2.0, 0.0, 1.5]).repeat(20000, 1)
    gates = gumbel_sigmoid_st(logits, tau=0.5)
    assert set(gates.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(gates.mean(0), torch.sigmoid(logits[0]), atol=0.015, rtol=0)


def test_straight_through_gradient_is_the_relaxed_samples_gradient():
    logits = torch.randn(50, requires_grad=True)
    weights = torch.randn(50)
    tau = 0.7
    torch.manual_seed(3)
    (gumbel_sigmoid_st(logits, tau) * weights).sum().backward()
    torch.manual_seed(3)
    u = torch.rand(50).clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid((logits.detach() + u.log() - (-u).log1p()) / tau)
    torch.testing.assert_close(logits.grad, weights * soft * (1 - soft) / tau)


def test_training_gradients_reach_group_and_skip_gates():
    torch.manual_seed(0)
    ffn = GatedFFN(16, 32, SparsityConfig(enabled=True, n_groups=4, layer_skip=True, gate_hidden=8))
    out = ffn(torch.randn(2, 6, 16))
    (out.hidden_states.pow(2).sum() + out.aux_loss).backward()
    for name in ("gate.hidden.weight", "gate.groups.weight", "gate.groups.bias", "gate.skip.weight"):
        grad = ffn.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_gate_starts_near_the_target_rate():
    torch.manual_seed(0)
    gate = SparseGate(32, 8, SparsityConfig(enabled=True, n_groups=8, target_active=0.25))
    probs = gate(torch.randn(4, 16, 32), torch.ones(4, 16, dtype=torch.bool)).group_probs
    assert abs(probs.mean().item() - 0.25) < 0.02


def test_threshold_inference_opens_groups_above_the_probability_threshold():
    cfg = SparsityConfig(enabled=True, n_groups=6, inference="threshold", threshold=0.3)
    gate = SparseGate(8, 6, cfg).eval()
    x = torch.randn(3, 5, 8)
    decision = gate(x, torch.ones(3, 5, dtype=torch.bool))
    assert torch.equal(decision.group_gates, (decision.group_probs > 0.3).float())


def test_top_g_inference_opens_exactly_top_g_groups_of_each_real_token():
    cfg = SparsityConfig(enabled=True, n_groups=6, inference="top_g", top_g=2)
    gate = SparseGate(8, 6, cfg).eval()
    valid = torch.tensor([[True, True, False]])
    decision = gate(torch.randn(1, 3, 8), valid)
    assert decision.group_gates.sum(-1).tolist() == [[2.0, 2.0, 2.0]]
    top = decision.group_probs.topk(2, dim=-1).indices
    assert torch.all(decision.group_gates.gather(-1, top) == 1)
    assert decision.run_gates.tolist() == [[1.0, 1.0, 0.0]]


def test_temperature_decays_exponentially_then_holds():
    cfg = SparsityConfig(tau_start=2.0, tau_end=0.5, anneal_steps=100)
    assert temperature_at(cfg, 0) == 2.0
    assert math.isclose(temperature_at(cfg, 50), 1.0)
    assert math.isclose(temperature_at(cfg, 100), 0.5) and math.isclose(temperature_at(cfg, 10**6), 0.5)
    assert temperature_at(SparsityConfig(tau_end=0.3, anneal_steps=0), 0) == 0.3
    with pytest.raises(ValueError, match="step"):
        temperature_at(cfg, -1)


def test_target_falls_on_the_cubic_schedule_and_drives_the_rate_loss():
    cfg = SparsityConfig(enabled=True, n_groups=2, target_active=0.5, target_start=0.9, anneal_steps=10)
    assert target_at(cfg, 0) == pytest.approx(0.9)
    assert target_at(cfg, 5) == pytest.approx(0.5 + 0.4 * 0.5**3)
    assert target_at(cfg, 10) == target_at(cfg, 99) == 0.5
    assert target_at(SparsityConfig(target_active=0.3), 0) == 0.3  # no target_start: constant
    ffn = GatedFFN(4, 8, cfg).train()
    assert torch.sigmoid(ffn.gate.groups.bias).tolist() == pytest.approx([0.9, 0.9])  # starts at target_start
    with torch.no_grad():
        ffn.gate.groups.weight.zero_()
        ffn.gate.groups.bias.zero_()  # p = 0.5 for every group and token
    x = torch.randn(2, 3, 4)
    assert ffn(x).aux_loss.item() == pytest.approx((0.5 - 0.9) ** 2)
    ffn.set_step(5)
    assert ffn(x).aux_loss.item() == pytest.approx((0.5 - target_at(cfg, 5)) ** 2)
    ffn.set_step(10)
    assert ffn(x).aux_loss.item() == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="target_start"):
        SparsityConfig(target_active=0.5, target_start=0.4)


def test_step_and_temperature_setters_walk_the_model():
    cfg = SparsityConfig(enabled=True, n_groups=2, tau_start=1.0, tau_end=0.25, anneal_steps=10)
    model = torch.nn.Sequential(GatedFFN(4, 8, cfg), GatedFFN(4, 8, cfg), GatedFFN(4, 8, SparsityConfig()))
    assert set_sparsity_step(model, 10) == 2
    assert [m.gate.temperature for m in model[:2]] == [0.25, 0.25]
    model[0].set_step(0)
    assert model[0].gate.temperature == 1.0
    model[2].set_step(5)  # gates off: nothing to anneal, no error
    assert set_temperature(model, 0.7) == 2 and model[1].gate.temperature == 0.7
    with pytest.raises(ValueError, match="tau"):
        set_temperature(model, 0.0)
