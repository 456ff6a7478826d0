"""GatedFFN: the dense form when off, masked-dense equality of the sparse inference path, padding, layer skip."""

import pytest
import torch
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertIntermediate

from hybridformer.sparsity import GatedFFN, SparsityConfig

D, D_FF, G = 16, 48, 4


def gated(**overrides):
    torch.manual_seed(0)
    cfg = SparsityConfig(enabled=True, n_groups=G, target_active=0.5, **overrides)
    ffn = GatedFFN(D, D_FF, cfg).double()
    torch.nn.init.normal_(ffn.gate.groups.weight, std=0.5)  # spread the logits so masks vary per token
    return ffn


def masked_reference(ffn, x, group_gates, run_gates):
    """Dense float64 FFN with the given gate mask applied (exact erf GELU written out)."""
    h = x @ ffn.fc_in.weight.T + ffn.fc_in.bias
    h = 0.5 * h * (1 + torch.erf(h / 2**0.5))
    h = h * group_gates.repeat_interleave(D_FF // G, dim=-1)
    return (h @ ffn.fc_out.weight.T + ffn.fc_out.bias) * run_gates.unsqueeze(-1)


def test_gates_off_is_exactly_the_dense_erf_gelu_ffn():
    torch.manual_seed(0)
    ffn = GatedFFN(D, D_FF, SparsityConfig(enabled=False))
    assert sorted(ffn.state_dict()) == ["fc_in.bias", "fc_in.weight", "fc_out.bias", "fc_out.weight"]
    x = torch.randn(2, 5, D)
    out = ffn(x, key_padding_mask=torch.ones(2, 5, dtype=torch.bool))
    want = ffn.fc_out(torch.nn.functional.gelu(ffn.fc_in(x), approximate="none"))
    assert torch.equal(out.hidden_states, want)
    assert out.aux_loss.shape == () and out.aux_loss.item() == 0 and out.stats is None
    h = x.double() @ ffn.fc_in.weight.double().T + ffn.fc_in.bias.double()
    h = 0.5 * h * (1 + torch.erf(h / 2**0.5))
    # the module computes in float32: float32's tolerances against the float64 reference
    torch.testing.assert_close(out.hidden_states, (h @ ffn.fc_out.weight.double().T + ffn.fc_out.bias.double()).float())


def test_bert_intermediate_and_output_dense_weights_load_into_fc_in_and_fc_out():
    hf = BertConfig(hidden_size=D, intermediate_size=D_FF, num_attention_heads=2)
    torch.manual_seed(0)
    intermediate, output_dense = BertIntermediate(hf).eval(), torch.nn.Linear(D_FF, D)
    ffn = GatedFFN(D, D_FF, SparsityConfig())
    ffn.load_state_dict(
        {
            "fc_in.weight": intermediate.dense.weight,
            "fc_in.bias": intermediate.dense.bias,
            "fc_out.weight": output_dense.weight,
            "fc_out.bias": output_dense.bias,
        }
    )
    x = torch.randn(2, 3, D)
    torch.testing.assert_close(ffn(x).hidden_states, output_dense(intermediate(x)), rtol=0, atol=0)


@pytest.mark.parametrize("overrides", [{}, {"inference": "top_g", "top_g": 2}, {"layer_skip": True}])
def test_sparse_inference_equals_dense_with_the_same_gate_mask(overrides):
    ffn = gated(**overrides).eval()
    if ffn.gate.skip is not None:
        torch.nn.init.normal_(ffn.gate.skip.weight, std=1.0)
        torch.nn.init.zeros_(ffn.gate.skip.bias)
    x = torch.randn(3, 7, D, dtype=torch.float64)
    pad = torch.ones(3, 7, dtype=torch.bool)
    pad[1, 5:] = False
    with torch.no_grad():
        decision = ffn.gate(x, pad)
        out = ffn(x, key_padding_mask=pad)
    opened = decision.group_gates[pad].mean().item()
    assert 0.1 < opened < 0.9, "the test needs a mix of open and closed groups"
    torch.testing.assert_close(
        out.hidden_states, masked_reference(ffn, x, decision.group_gates, decision.run_gates), rtol=1e-12, atol=1e-12
    )
    assert torch.all(out.hidden_states[1, 5:] == 0), "padding computes nothing"
    if ffn.gate.skip is not None:
        assert 0 < out.stats.skip_rate.item() < 1
        skipped = (decision.run_gates == 0) & pad
        assert torch.all(out.hidden_states[skipped] == 0), "a skipped token's FFN output is exactly zero"


def test_eval_with_autograd_gives_the_sparse_paths_values_differentiably():
    ffn = gated().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    with torch.no_grad():
        sparse = ffn(x).hidden_states
    dense = ffn(x).hidden_states
    assert dense.requires_grad
    torch.testing.assert_close(dense, sparse, rtol=1e-12, atol=1e-12)


def test_training_output_uses_exact_hard_gates():
    ffn = gated(layer_skip=True)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    torch.manual_seed(7)
    out = ffn(x)
    torch.manual_seed(7)
    decision = ffn.gate(x, torch.ones(2, 6, dtype=torch.bool))
    assert set(decision.group_gates.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(
        out.hidden_states, masked_reference(ffn, x, decision.group_gates.detach(), decision.run_gates.detach())
    )
    assert out.stats.active_fraction.item() == pytest.approx(
        (decision.group_gates * decision.run_gates.unsqueeze(-1)).mean().item()
    )


def test_padding_does_not_change_real_tokens_or_statistics():
    ffn = gated().eval()
    x = torch.randn(1, 6, D, dtype=torch.float64)
    pad = torch.tensor([[True, True, True, True, False, False]])
    with torch.no_grad():
        a = ffn(x, key_padding_mask=pad)
        x2 = x.clone()
        x2[0, 4:] = 100.0
        b = ffn(x2, key_padding_mask=pad)
    assert torch.equal(a.hidden_states, b.hidden_states)
    assert torch.equal(a.stats.group_open_rate, b.stats.group_open_rate) and a.stats.n_tokens.item() == 4
    torch.testing.assert_close(a.aux_loss, b.aux_loss)


def test_layer_skip_gate_closed_makes_the_ffn_branch_zero_so_the_residual_is_identity():
    ffn = gated(layer_skip=True).eval()
    torch.nn.init.constant_(ffn.gate.skip.bias, -50.0)
    x = torch.randn(2, 4, D, dtype=torch.float64)
    with torch.no_grad():
        out = ffn(x)
    assert torch.equal(x + out.hidden_states, x)
    assert out.stats.skip_rate.item() == 1.0 and out.stats.active_fraction.item() == 0.0


def test_statistics_describe_the_gates():
    ffn = gated().eval()
    with torch.no_grad():
        stats = ffn(torch.randn(4, 8, D, dtype=torch.float64)).stats
    assert stats.group_open_rate.shape == (G,)
    torch.testing.assert_close(stats.group_open_rate.mean(), stats.active_fraction)
    assert 0 < stats.gate_entropy.item() < 0.6932
    assert stats.skip_rate is None and stats.n_tokens.item() == 32
    assert set(stats.scalars()) == {"active_fraction", "expected_active", "gate_entropy", "temperature"}


def test_swapped_linear_modules_fall_back_to_the_masked_dense_form():
    ffn = gated().eval()
    x = torch.randn(2, 5, D, dtype=torch.float64)
    with torch.no_grad():
        want = ffn(x).hidden_states
        ffn.fc_in = torch.nn.Sequential(ffn.fc_in)  # a wrapper module: the kernel cannot slice its weights
        torch.testing.assert_close(ffn(x).hidden_states, want, rtol=1e-12, atol=1e-12)
