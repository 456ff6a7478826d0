"""AdamW parameter groups and the warmup + cosine schedule, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hybridformer.config import ConfigError
from hybridformer.training import TrainConfig, WarmupCosine, build_optimizer, build_scheduler, param_groups


def test_schedule_values_by_hand():
    f = WarmupCosine(warmup_steps=4, total_steps=14, min_ratio=0.0)
    assert [f(s) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # p = (s - 4) / 10: s=9 is halfway (0.5), s=14 the end (0).
    assert f(9) == pytest.approx(0.5)
    assert f(6) == pytest.approx((1 + math.cos(math.pi * 0.2)) / 2)
    assert f(14) == pytest.approx(0.0) and f(20) == pytest.approx(0.0)
    floor = WarmupCosine(warmup_steps=0, total_steps=10, min_ratio=0.1)
    assert floor(0) == 1.0 and floor(5) == pytest.approx(0.1 + 0.9 * 0.5) and floor(10) == pytest.approx(0.1)


def test_scheduler_drives_the_optimizer_lr():
    model = nn.Linear(3, 3)
    cfg = TrainConfig(lr=1e-3, warmup_steps=0, warmup_ratio=0.25)  # 0.25 * 8 = 2 warmup steps
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=8)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [1e-3 * WarmupCosine(2, 8)(s) for s in range(8)]
    assert seen == pytest.approx(expected)
    assert seen[:3] == pytest.approx([0.0, 5e-4, 1e-3])


def test_no_decay_on_biases_and_norms_and_tied_weights_once():
    emb = nn.Embedding(10, 4)
    model = nn.Sequential(emb, nn.LayerNorm(4), nn.Linear(4, 10))
    model[2].weight = emb.weight  # tied decoder
    decay, keep = param_groups(model, 0.1)
    assert decay["lr_scale"] == keep["lr_scale"] == 1.0
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert [tuple(p.shape) for p in decay["params"]] == [(10, 4)]  # the tied matrix, once
    assert sorted(tuple(p.shape) for p in keep["params"]) == [(4,), (4,), (10,)]
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(frozen, TrainConfig())


def test_adamw_weight_decay_is_applied_only_to_matrices():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(1.0)
    opt = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.5))
    model.weight.grad = torch.zeros_like(model.weight)
    model.bias.grad = torch.zeros_like(model.bias)
    opt.step()
    # Zero gradient: only decoupled decay moves weights, by lr * wd = 5%.
    torch.testing.assert_close(model.weight, torch.full((2, 2), 0.95))
    torch.testing.assert_close(model.bias, torch.ones(2))


def test_lr_multipliers_scale_matching_parameters_and_follow_the_schedule():
    model = nn.ModuleDict({"body": nn.Linear(3, 3), "scorer": nn.Linear(3, 1), "gate": nn.Linear(3, 2)})
    cfg = TrainConfig(lr=1e-3, warmup_steps=1, lr_multipliers={"scorer": 10.0, "scorer.bias": 2.0, "gate.": 50.0})
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=4)
    lr_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    for _ in range(1):  # step 0 is lr 0 (warmup); step 1 is the peak
        opt.step()
        sched.step()
    peak = {name: lr_of[id(p)]["lr"] for name, p in model.named_parameters()}
    assert peak["body.weight"] == pytest.approx(1e-3) and peak["body.bias"] == pytest.approx(1e-3)
    assert peak["scorer.weight"] == pytest.approx(1e-2)
    assert peak["scorer.bias"] == pytest.approx(2e-3)  # the longest matching key wins
    assert peak["gate.weight"] == pytest.approx(5e-2) and peak["gate.bias"] == pytest.approx(5e-2)
    assert lr_of[id(model["gate"].weight)]["weight_decay"] == cfg.weight_decay
    assert lr_of[id(model["gate"].bias)]["weight_decay"] == 0.0


def test_lr_multipliers_reject_a_key_matching_nothing():
    with pytest.raises(ValueError, match="lr_multipliers: 'scorer' matches no trainable parameter"):
        build_optimizer(nn.Linear(2, 2), TrainConfig(lr_multipliers={"scorer": 10.0}))
    with pytest.raises(ConfigError, match=r"lr_multipliers\.gate"):
        TrainConfig(lr_multipliers={"gate": 0.0})


def test_a_gate_multiplier_reaches_exactly_the_multimodal_decoders_cross_attention_gates():
    """The multimodal recipe's key ``cross_attention.gate`` (benchmarks/multimodal_experiment.py
    --gate-lr-multiplier) puts the decoder's tanh gates, and nothing else, in a group at 100x the lr."""
    from hybridformer.recipes.multimodal_common import load_model

    model = load_model("tiny")
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, lr_multipliers={"cross_attention.gate": 100.0}))
    fast = [g for g in optimizer.param_groups if g["lr_scale"] == 100.0]
    gates = [p for n, p in model.named_parameters() if n.endswith("cross_attention.gate")]
    assert len(fast) == 1 and len(gates) == 2
    assert {id(p) for p in fast[0]["params"]} == {id(p) for p in gates}
    assert fast[0]["lr"] == pytest.approx(0.1) and fast[0]["weight_decay"] == 0.0
