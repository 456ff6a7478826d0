"""int8 and sparsity together: the int8 group kernel of a gated, pruned FFN against two references."""

from __future__ import annotations

import pytest
import torch

from hybridformer.compression import Int8GroupKernel, quantize
from hybridformer.sparsity import GatedFFN, SparsityConfig, masked_ffn

pytest.importorskip("torchao")

CASES = [("dynamic", "ao"), ("dynamic", "torchao"), ("weight", "torchao")]
# Max |error| as a fraction of max |reference output|. Against the dense int8 FFN of the same open
# groups the int8 weights are the same numbers (the groups are exact slices of them); in dynamic mode
# each group's call quantizes its own gathered activations (per tensor for ao, 7-bit; per token for
# torchao), the dense layer all of them at once, so the results differ by activation rounding only;
# in weight mode only float summation order differs. Against fp32 the weight rounding adds on top.
VS_INT8_DENSE = {"ao": 0.08, "torchao": 0.03, "weight": 1e-5}
VS_FP32 = {"ao": 0.08, "torchao": 0.04, "weight": 0.02}


def _tolerance(table: dict[str, float], mode: str, backend: str) -> float:
    return table["weight"] if mode == "weight" else table[backend]


@pytest.fixture
def pruned_ffn() -> GatedFFN:
    """8 groups of 32 neurons, 3 opened per token, pruned to 6 groups (2 and 5 removed)."""
    torch.manual_seed(0)
    ffn = GatedFFN(64, 256, SparsityConfig(enabled=True, n_groups=8, inference="top_g", top_g=3)).eval()
    with torch.no_grad():
        ffn.gate.groups.weight.normal_(std=0.5)  # token-dependent choices of groups
    ffn.keep_groups(torch.tensor([0, 1, 3, 4, 6, 7]))
    return ffn


@pytest.fixture
def tokens() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.randn(2, 24, 64)
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[1, 17:] = False  # padding computes nothing
    return x, mask


@pytest.mark.parametrize(("mode", "backend"), CASES)
def test_int8_groups_equal_dense_int8_and_fp32(pruned_ffn, tokens, mode, backend) -> None:
    x, mask = tokens
    quantized = quantize(pruned_ffn, mode, backend, embeddings=False)
    kernel = quantized.sparse_kernel
    assert isinstance(kernel, Int8GroupKernel) and len(kernel.groups_in) == 6
    kernel.dense_above = 1.0  # always dispatch: this test is about the grouped path
    rows = []
    hooks = [g.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0])) for g in kernel.groups_in]
    with torch.no_grad():
        decision = pruned_ffn.gate(x, mask)
        dense_int8 = masked_ffn(x, decision.group_gates, decision.run_gates, quantized.fc_in, quantized.fc_out,
                                quantized.act)
        fp32 = pruned_ffn(x, mask).hidden_states
        out = quantized(x, mask).hidden_states
    for hook in hooks:
        hook.remove()
    # Only the open (token, group) pairs of the real tokens went through the group layers.
    open_pairs = int((decision.group_gates.bool() & mask.unsqueeze(-1)).sum())
    assert sum(rows) == open_pairs == 3 * int(mask.sum())
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    scale = fp32.abs().max()
    assert (out - dense_int8).abs().max() <= _tolerance(VS_INT8_DENSE, mode, backend) * scale
    assert (out - fp32).abs().max() <= _tolerance(VS_FP32, mode, backend) * scale
    assert (dense_int8 - fp32).abs().max() > 1e-6  # int8 really changed the numbers


def test_dense_above_switches_to_the_masked_int8_form(pruned_ffn, tokens) -> None:
    x, mask = tokens
    quantized = quantize(pruned_ffn, "dynamic", "ao", embeddings=False)
    with torch.no_grad():
        d = pruned_ffn.gate(x, mask)
        layers = (quantized.fc_in, quantized.fc_out, quantized.act)
        quantized.sparse_kernel.dense_above = 0.0  # 3 of 6 groups open: above 0 -> dense form
        out = quantized(x, mask).hidden_states
        # The dense form runs on the real tokens alone (padding computes nothing, its output is 0).
        assert torch.equal(out[mask], masked_ffn(x[mask], d.group_gates[mask], d.run_gates[mask], *layers))
        assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
        quantized.sparse_kernel = None  # without a kernel the layer falls back to GatedFFN's masked form
        assert torch.equal(quantized(x, mask).hidden_states, masked_ffn(x, d.group_gates, d.run_gates, *layers))


def test_pruning_drops_a_stale_kernel(pruned_ffn) -> None:
    pruned_ffn.sparse_kernel = quantize(pruned_ffn, "dynamic", "ao", embeddings=False).sparse_kernel
    pruned_ffn.keep_groups(torch.arange(4))  # a kernel built on 6 groups no longer fits
    assert pruned_ffn.sparse_kernel is None


def test_all_groups_open_runs_the_real_tokens_through_the_dense_int8_layers(tokens) -> None:
    """Pruned to no more groups than a token opens: every real token computes the whole (narrower)
    FFN, once, in the dense int8 layers; padding rows never enter them."""
    x, mask = tokens
    torch.manual_seed(0)
    ffn = GatedFFN(64, 256, SparsityConfig(enabled=True, n_groups=8, inference="top_g", top_g=2)).eval()
    ffn.keep_groups(torch.tensor([1, 6]))
    quantized = quantize(ffn, "dynamic", "ao", embeddings=False)
    rows = []
    hook = quantized.fc_in.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    with torch.no_grad():
        out = quantized(x, mask).hidden_states
        alone = quantized.fc_out(quantized.act(quantized.fc_in(x[mask])))  # the real tokens by themselves
    hook.remove()
    assert rows[0] == int(mask.sum()) == 41
    assert torch.equal(out[mask], alone)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
