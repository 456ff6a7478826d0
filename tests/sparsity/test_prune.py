"""prune: removes rarely opened groups, keeps outputs, shrinks the state dict, reloads, reports."""

import io

import pytest
import torch
from torch import nn

from hybridformer.sparsity import GatedFFN, SparsityConfig, count_parameters, measure_group_usage, prune

D, D_FF, G = 16, 64, 8
GS = D_FF // G


class TwoLayer(nn.Module):
    """Two residual gated FFNs; the call signature of a model taking keyword batches."""

    def __init__(self, layer_skip=False):
        super().__init__()
        cfg = SparsityConfig(enabled=True, n_groups=G, target_active=0.5, layer_skip=layer_skip, gate_hidden=4)
        self.ffns = nn.ModuleList(GatedFFN(D, D_FF, cfg) for _ in range(2))

    def forward(self, x, key_padding_mask=None):
        for ffn in self.ffns:
            x = x + ffn(x, key_padding_mask=key_padding_mask).hidden_states
        return x


def build(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = TwoLayer(**kwargs)
    with torch.no_grad():
        for ffn in model.ffns:
            ffn.gate.groups.weight.normal_(std=0.5)
        # never open: layer 0 groups 1 and 5, layer 1 group 2
        model.ffns[0].gate.groups.bias[[1, 5]] = -30.0
        model.ffns[1].gate.groups.bias[2] = -30.0
    return model.eval()


def batches(n=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(3, 10, D, generator=gen)} for _ in range(n)]


def test_never_opened_groups_are_removed_and_outputs_are_unchanged():
    model = build()
    x = torch.randn(4, 9, D)
    with torch.no_grad():
        before = model(x)
    report = prune(model, batches(), min_activation=1e-6)
    assert [layer.removed_groups for layer in report.layers] == [[1, 5], [2]]
    assert model.ffns[0].kept_groups.tolist() == [0, 2, 3, 4, 6, 7]
    assert model.ffns[0].fc_in.weight.shape == (6 * GS, D) and model.ffns[0].fc_out.weight.shape == (D, 6 * GS)
    assert model.ffns[1].gate.groups.weight.shape == (7, 4)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-6)


def test_pruned_outputs_equal_for_tokens_that_open_no_removed_group():
    model = build()
    ffn = model.ffns[0]
    x = torch.randn(64, 1, D)
    with torch.no_grad():
        decision = ffn.gate(x, torch.ones(64, 1, dtype=torch.bool))
        before = ffn(x).hidden_states
    rates = decision.group_gates.mean((0, 1))
    threshold = float(rates[rates > 0].min()) + 1e-6  # also removes the least used group that does open
    report = prune(ffn, [x], min_activation=threshold)
    removed = report.layers[0].removed_groups
    assert len(removed) == 3
    with torch.no_grad():
        after = ffn(x).hidden_states
    touches_removed = decision.group_gates[:, 0, removed].sum(-1) > 0  # (64,)
    assert 0 < touches_removed.sum() < 64
    torch.testing.assert_close(after[~touches_removed], before[~touches_removed], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(after[touches_removed], before[touches_removed])


def state_dict_numel(module):
    return sum(t.numel() for k, t in module.state_dict().items() if not k.endswith("kept_groups"))


def test_state_dict_really_shrinks_and_a_fresh_model_loads_it():
    model = build(layer_skip=True)
    numel_before, params_before = state_dict_numel(model), count_parameters(model)
    report = prune(model, batches(), min_activation=1e-6)
    removed_per_group = 2 * D * GS + GS + (4 + 1)  # fc_in rows + bias, fc_out columns, gate logit row + bias
    assert params_before - count_parameters(model) == 3 * removed_per_group
    assert numel_before - state_dict_numel(model) == 3 * removed_per_group
    assert (report.params_before, report.params_after) == (params_before, count_parameters(model))
    assert report.ffn_params_before - report.ffn_params_after == 3 * removed_per_group

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = TwoLayer(layer_skip=True).eval()  # built from the same config, unpruned
    fresh.load_state_dict(torch.load(buffer), strict=True)
    assert fresh.ffns[0].kept_groups.tolist() == [0, 2, 3, 4, 6, 7] and fresh.ffns[0].d_ff == 6 * GS
    x = torch.randn(2, 5, D)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_dense_checkpoint_loads_into_a_gated_ffn():
    dense = GatedFFN(D, D_FF, SparsityConfig())
    ffn = GatedFFN(D, D_FF, SparsityConfig(enabled=True, n_groups=G))
    result = ffn.load_state_dict(dense.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["gate.groups.bias", "gate.groups.weight"]
    assert result.unexpected_keys == [] and ffn.kept_groups.tolist() == list(range(G))
    assert torch.equal(ffn.fc_in.weight, dense.fc_in.weight)


def test_report_counts_flops_from_measured_open_rates():
    model = build()
    data = batches()
    usage = measure_group_usage(model, data)
    report = prune(model, data, min_activation=1e-6)
    gate_flops = 2 * D * 4 + 2 * 4 * G  # gate MLP: d -> 4 -> G
    layer0 = report.layers[0]
    open_groups = usage["ffns.0"].open_rate.sum().item()
    assert layer0.flops_per_token_before == pytest.approx(gate_flops + 4 * D * GS * open_groups)
    # the removed groups never opened: active FLOPs drop only by their gate logits
    assert layer0.flops_per_token_after == pytest.approx(layer0.flops_per_token_before - 2 * 4 * 2)
    assert report.dense_flops_per_token == 2 * 4 * D * D_FF
    assert report.n_tokens == 4 * 3 * 10 and layer0.open_rate[1] == 0.0
    assert "ffns.0" in report.summary()
    assert report.to_dict()["ffn_params_removed"] == pytest.approx(report.ffn_params_removed)


def test_calibration_counts_only_real_tokens_and_accepts_tuples_and_tensors():
    model = build()
    x = torch.randn(2, 6, D)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 3:] = False
    usage = measure_group_usage(model, [(x, mask)])
    assert usage["ffns.0"].n_tokens == 9
    single = build().ffns[0]
    assert measure_group_usage(single, [x])[""].n_tokens == 12


def test_every_layer_keeps_at_least_its_most_used_group():
    model = build()
    report = prune(model, batches(1), min_activation=1.0)
    assert all(layer.groups_after == 1 for layer in report.layers)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 4, D))).all()


def test_model_mode_is_restored_and_bad_arguments_are_rejected():
    model = build().train()
    params = list(model.parameters())
    prune(model, batches(1), min_activation=0.0)
    assert model.training and all(layer.n_groups == G for layer in model.ffns)
    assert all(a is b for a, b in zip(params, model.parameters())), "nothing pruned: same parameter objects"
    with pytest.raises(ValueError, match="min_activation"):
        prune(model, batches(1), min_activation=1.5)
    with pytest.raises(ValueError, match="calibration_batches"):
        prune(model, [], min_activation=0.1)
    with pytest.raises(ValueError, match="calibration_batches"):
        prune(model, ["text"], min_activation=0.1)
    with pytest.raises(ValueError, match="GatedFFN"):
        prune(GatedFFN(D, D_FF, SparsityConfig()), [torch.randn(1, 2, D)], min_activation=0.1)
