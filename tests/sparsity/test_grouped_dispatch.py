"""The sparse grouped-dispatch kernel equals the dense FFN with the same gate mask (float64)."""

import pytest
import torch
from torch import nn

from hybridformer.sparsity import grouped_ffn, masked_ffn

D, D_FF, G = 8, 24, 4


def reference(x, mask, run, fc_in, fc_out):
    """Dense float64 FFN, computed neuron by neuron group: closed groups contribute nothing."""
    h = x @ fc_in.weight.T
    if fc_in.bias is not None:
        h = h + fc_in.bias
    h = torch.nn.functional.gelu(h)  # (T, d_ff)
    neuron_mask = mask.repeat_interleave(D_FF // G, dim=1).to(x.dtype)  # (T, d_ff)
    y = (h * neuron_mask) @ fc_out.weight.T
    if fc_out.bias is not None:
        y = y + fc_out.bias
    return y * run.unsqueeze(-1).to(x.dtype)


def layers(bias=True):
    torch.manual_seed(0)
    return nn.Linear(D, D_FF, bias=bias).double(), nn.Linear(D_FF, D, bias=bias).double()


@pytest.mark.parametrize("chunk", [3, 512])
@pytest.mark.parametrize("p_open", [0.0, 0.3, 0.7, 1.0])
def test_grouped_ffn_equals_masked_dense(chunk, p_open):
    fc_in, fc_out = layers()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(13, D, dtype=torch.float64, generator=gen)
    run = torch.rand(13, generator=gen) > 0.2
    mask = (torch.rand(13, G, generator=gen) < p_open) & run.unsqueeze(-1)
    got = grouped_ffn(x, mask, fc_in, fc_out, torch.nn.functional.gelu, run=run, chunk_tokens=chunk)
    torch.testing.assert_close(got, reference(x, mask, run, fc_in, fc_out), rtol=1e-12, atol=1e-12)


def test_grouped_ffn_without_biases_and_with_an_unused_group():
    fc_in, fc_out = layers(bias=False)
    x = torch.randn(9, D, dtype=torch.float64)
    mask = torch.rand(9, G) < 0.5
    mask[:, 2] = False
    run = torch.ones(9, dtype=torch.bool)
    got = grouped_ffn(x, mask, fc_in, fc_out, torch.nn.functional.gelu, run=run)
    torch.testing.assert_close(got, reference(x, mask, run, fc_in, fc_out), rtol=1e-12, atol=1e-12)


def test_all_open_takes_the_dense_path_exactly():
    fc_in, fc_out = layers()
    x = torch.randn(5, D, dtype=torch.float64)
    want = fc_out(torch.nn.functional.gelu(fc_in(x)))
    mask = torch.ones(5, G, dtype=torch.bool)
    assert torch.equal(grouped_ffn(x, mask, fc_in, fc_out, torch.nn.functional.gelu), want)
    run = torch.ones(5, dtype=torch.bool)
    assert torch.equal(grouped_ffn(x, mask, fc_in, fc_out, torch.nn.functional.gelu, run=run), want)


def test_masked_ffn_matches_reference_and_is_differentiable():
    fc_in, fc_out = layers()
    x = torch.randn(2, 3, D, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 3, G) < 0.5
    run = torch.tensor([[True, False, True], [True, True, True]])
    got = masked_ffn(x, mask.double(), run.double(), fc_in, fc_out, torch.nn.functional.gelu)
    want = reference(x.reshape(6, D), mask.reshape(6, G), run.reshape(6), fc_in, fc_out).view(2, 3, D)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got.sum().backward()
    assert torch.all(x.grad[0, 1] == 0) and x.grad.abs().sum() > 0
