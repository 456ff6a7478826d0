"""rewire_by_importance: neurons sorted by a hand-computed importance, dense function unchanged."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hybridformer.sparsity import GatedFFN, SparsityConfig, neuron_importance, prune, rewire_by_importance

D, D_FF, G = 8, 32, 4


class Stack(nn.Module):
    def __init__(self, gates: bool):
        super().__init__()
        cfg = SparsityConfig(enabled=gates, n_groups=G, target_active=0.5)
        self.ffns = nn.ModuleList(GatedFFN(D, D_FF, cfg) for _ in range(2))

    def forward(self, x, key_padding_mask=None):
        for ffn in self.ffns:
            x = x + ffn(x, key_padding_mask=key_padding_mask).hidden_states
        return x


def build(gates: bool) -> Stack:
    torch.manual_seed(0)
    model = Stack(gates).double()
    with torch.no_grad():  # neurons of very different sizes, so the order matters
        for ffn in model.ffns:
            ffn.fc_out.weight.mul_(torch.logspace(-2, 1, D_FF, dtype=torch.float64)[torch.randperm(D_FF)])
    return model


def calib():
    gen = torch.Generator().manual_seed(1)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    return [{"x": torch.randn(3, 6, D, generator=gen, dtype=torch.float64), "key_padding_mask": mask}]


def test_importance_matches_a_hand_computation_over_real_tokens_with_gates_bypassed():
    model = build(gates=True)
    (batch,) = calib()
    x, mask = batch["x"], batch["key_padding_mask"]
    expected = []
    with torch.no_grad():
        for ffn in model.ffns:
            acts = F.gelu(x[mask] @ ffn.fc_in.weight.T + ffn.fc_in.bias)  # real tokens only
            expected.append(acts.abs().mean(0) * ffn.fc_out.weight.norm(dim=0))
            x = x + (F.gelu(x @ ffn.fc_in.weight.T + ffn.fc_in.bias) @ ffn.fc_out.weight.T + ffn.fc_out.bias)
    got = neuron_importance(model, calib())
    for name, ref in zip(["ffns.0", "ffns.1"], expected):
        torch.testing.assert_close(got[name], ref, rtol=1e-12, atol=1e-14)
    assert model.ffns[0].gate is not None and model.training  # gates and mode restored


def test_rewiring_sorts_neurons_and_keeps_the_dense_function():
    model = build(gates=False).eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    with torch.no_grad():
        before = model(x)
    perms = rewire_by_importance(model, calib())
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-12, atol=1e-12)
    for name, imp in neuron_importance(model, calib()).items():
        assert (imp[:-1] >= imp[1:]).all(), name  # most important first
        assert sorted(perms[name].tolist()) == list(range(D_FF)) and perms[name].tolist() != list(range(D_FF))


def test_rewired_groups_rank_by_importance_so_pruning_the_last_costs_least():
    """After rewiring, dropping the last group costs far less than dropping the first, or than before."""
    x = torch.randn(4, 6, D, dtype=torch.float64)

    def error_after_dropping(group: int, rewire: bool) -> float:
        model = build(gates=True)
        if rewire:
            rewire_by_importance(model, calib())
        dense = Stack(gates=False).double()
        dense.load_state_dict({k: v for k, v in model.state_dict().items() if "gate" not in k and "kept" not in k})
        with torch.no_grad():
            ref = dense(x)
            for ffn in model.ffns:
                ffn.gate.groups.bias.fill_(30.0)  # every group open: the gated model equals the dense one
                ffn.keep_groups(torch.tensor([g for g in range(G) if g != group]))
            return (model.eval()(x) - ref).pow(2).mean().sqrt().item()

    last, first = error_after_dropping(G - 1, rewire=True), error_after_dropping(0, rewire=True)
    assert last < 0.5 * error_after_dropping(G - 1, rewire=False)
    assert last < 0.1 * first


def test_bad_inputs():
    with pytest.raises(ValueError, match="no GatedFFN"):
        rewire_by_importance(nn.Linear(2, 2), calib())
    with pytest.raises(ValueError, match="calibration_batches: is empty"):
        rewire_by_importance(build(gates=True), [])
    model = build(gates=True)
    prune(model, calib(), min_activation=0.99)
    with pytest.raises(ValueError, match="already pruned"):
        rewire_by_importance(model, calib())
