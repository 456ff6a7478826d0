"""dense_attention (full self, cross, cached causal) against the float64 oracle.

The oracle is `reference_attention` over `all_keys_mask`, which builds the rectangular mask from
positions, apart from dense.py's SDPA masks.
"""

from __future__ import annotations

import pytest
import torch

from hybridformer.attention import all_keys_mask, dense_attention, reference_attention

B, H, D = 3, 2, 8


def tensors(nq: int, nk: int, dtype=torch.float32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, nq, D, generator=generator).to(dtype)
    k = torch.randn(B, H, nk, D, generator=generator).to(dtype)
    v = torch.randn(B, H, nk, D, generator=generator).to(dtype)
    return q, k, v


def key_mask(nk: int) -> torch.Tensor:
    """Example 0: a hole; example 1: all keys are padding; example 2: right padding."""
    mask = torch.ones(B, nk, dtype=torch.bool)
    mask[0, nk // 2] = False
    mask[1] = False
    mask[2, nk - 2 :] = False
    return mask


def oracle(q, k, v, mask_kwargs, scale=None):
    mask = all_keys_mask(B, q.shape[2], k.shape[2], **mask_kwargs)
    return reference_attention(q, k, v, mask, scale)


@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_full_self_attention(padded, causal):
    q, k, v = tensors(7, 7)
    mask = key_mask(7) if padded else None
    out = dense_attention(q, k, v, key_padding_mask=mask, causal=causal)
    want = oracle(q, k, v, dict(causal=causal, key_padding_mask=mask))
    assert out.dtype == torch.float32 and out.shape == (B, H, 7, D)
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)


def test_cross_attention_with_per_example_key_padding():
    q, _, _ = tensors(5, 1, seed=1)  # queries from one source ...
    _, k, v = tensors(1, 11, seed=2)  # ... keys and values from another, of another length
    v = v[..., :6]  # value size may differ from the key size
    mask = key_mask(11)
    out = dense_attention(q, k, v, key_padding_mask=mask, scale=0.3)
    want = oracle(q, k, v, dict(key_padding_mask=mask), scale=0.3)
    assert out.shape == (B, H, 5, 6)
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    assert not out.isnan().any()
    assert torch.equal(out[1], torch.zeros_like(out[1]))  # example 1 sees no key: zeros, not NaN


@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
def test_causal_cached_decoding_queries_are_the_last_positions(padded):
    q, k, v = tensors(3, 10, seed=3)
    mask = key_mask(10) if padded else None
    out = dense_attention(q, k, v, key_padding_mask=mask, causal=True)
    torch.testing.assert_close(out.double(), oracle(q, k, v, dict(causal=True, key_padding_mask=mask)), atol=1e-5, rtol=1e-5)
    # The same as the last 3 rows of square causal attention whose last 3 queries are these.
    q_full = torch.cat([torch.randn(B, H, 7, D), q], dim=2)
    square = dense_attention(q_full, k, v, key_padding_mask=mask, causal=True)
    torch.testing.assert_close(out, square[:, :, 7:], atol=1e-6, rtol=1e-6)


def test_gradients_match_the_oracle_and_vanish_for_queries_that_see_nothing():
    q, k, v = (x.double().requires_grad_() for x in tensors(4, 9, seed=4))
    mask = key_mask(9)
    grad_out = torch.randn(B, H, 4, D, dtype=torch.float64)
    got = torch.autograd.grad(dense_attention(q, k, v, key_padding_mask=mask, causal=True), (q, k, v), grad_out)
    want = torch.autograd.grad(oracle(q, k, v, dict(causal=True, key_padding_mask=mask)), (q, k, v), grad_out)
    for g, w in zip(got, want):
        assert not g.isnan().any()
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-10)
    assert torch.equal(got[0][1], torch.zeros_like(got[0][1]))  # example 1: no key, no gradient


def test_bfloat16_inputs():
    q, k, v = tensors(6, 9, dtype=torch.bfloat16, seed=5)
    mask = key_mask(9)
    out = dense_attention(q, k, v, key_padding_mask=mask)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), oracle(q, k, v, dict(key_padding_mask=mask)), atol=2e-2, rtol=2e-2)
    assert torch.equal(out[1], torch.zeros_like(out[1]))


def test_dropout_changes_training_outputs_only_when_asked():
    q, k, v = tensors(5, 5)
    torch.testing.assert_close(dense_attention(q, k, v, dropout_p=0.0), dense_attention(q, k, v))
    torch.manual_seed(0)
    assert not torch.allclose(dense_attention(q, k, v, dropout_p=0.5), dense_attention(q, k, v))


@pytest.mark.parametrize(
    "nq, nk, change, match",
    [
        (5, 3, dict(causal=True), r"causal: the 5 queries must be the last of the 3 keys"),
        (4, 6, dict(key_padding_mask=torch.ones(B, 4, dtype=torch.bool)), r"key_padding_mask: expected shape \(B, Nk\) = \(3, 6\)"),
        (4, 6, dict(key_padding_mask=torch.ones(B, 6)), r"key_padding_mask: expected a bool tensor"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_argument(nq, nk, change, match):
    q, k, v = tensors(nq, nk)
    with pytest.raises(ValueError, match=match):
        dense_attention(q, k, v, **change)


def test_key_shape_must_match_the_queries():
    q, k, v = tensors(4, 6)
    with pytest.raises(ValueError, match=r"k: expected shape \(B, H, Nk, D\)"):
        dense_attention(q, k[:, :1], v)
    with pytest.raises(ValueError, match=r"v: expected shape"):
        dense_attention(q, k, v[:, :, :5])
