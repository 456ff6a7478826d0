"""The blocked kernel against the dense float64 reference (outputs and gradients)."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from hybridformer.attention import dense_mask, hybrid_attention, reference_attention


def _inputs(seed, batch, heads, n, dim, dtype=torch.float64, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, heads, n, dim, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)
        for _ in range(3)
    ]


def _random_sets(seed, batch, n, window, k, per_block):
    """Random global indices in [-1, N): empty slots and duplicates included on purpose."""
    gen = torch.Generator().manual_seed(seed + 1)
    shape = (batch, math.ceil(n / window), k) if per_block else (batch, k)
    return torch.randint(-1, n, shape, generator=gen)


def _random_padding(seed, batch, n):
    gen = torch.Generator().manual_seed(seed + 2)
    pad = torch.rand(batch, n, generator=gen) > 0.3
    pad[0, : max(1, n // 3)] = False  # a run of padding at the start of sequence 0
    return pad


# (n, window, local, causal, k, per_block, padding, global_queries_attend_all)
CASES = [
    (1, 4, "block", False, None, False, False, False),
    (1, 4, "sliding", True, 3, False, False, True),
    (7, 3, "block", False, None, False, False, False),
    (37, 8, "block", False, 5, False, True, False),
    (37, 8, "block", True, 5, True, True, False),
    (37, 8, "sliding", False, 5, False, True, True),
    (37, 8, "sliding", True, 5, True, False, False),
    (37, 7, "sliding", False, 3, True, True, False),
    (20, 4, "block", False, 40, False, True, True),  # K > number of (valid) tokens
    (130, 64, "sliding", False, 9, True, True, False),  # half-window tiles
    (130, 64, "sliding", True, 9, False, True, True),
    (200, 16, "block", True, 12, False, False, True),
    (2, 1, "sliding", False, 2, False, False, False),  # window 1: each token sees only itself
    (50, 256, "block", True, 4, True, True, False),  # window longer than the sequence
    (50, 300, "sliding", False, 4, False, True, True),
    (90, 64, "sliding", True, 4, True, False, False),  # reach capped at the sequence
]


def _case(case, seed=0, dtype=torch.float64, requires_grad=False, batch=2, heads=3, dim=8):
    n, window, local, causal, k, per_block, padding, attend_all = case
    q, kk, v = _inputs(seed, batch, heads, n, dim, dtype, requires_grad)
    rule = dict(
        window=window,
        local=local,
        causal=causal,
        global_indices=None if k is None else _random_sets(seed, batch, n, window, k, per_block),
        key_padding_mask=_random_padding(seed, batch, n) if padding else None,
        global_queries_attend_all=attend_all,
    )
    return q, kk, v, rule


def _reference(q, k, v, rule):
    return reference_attention(q, k, v, dense_mask(q.shape[0], q.shape[2], **rule))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_dense_reference(case):
    q, k, v, rule = _case(case)
    out = hybrid_attention(q, k, v, backend="blocked", **rule)
    assert out.dtype == torch.float64 and out.shape == q.shape
    torch.testing.assert_close(out, _reference(q, k, v, rule), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradients_match_dense_reference(case):
    q, k, v, rule = _case(case, seed=1, requires_grad=True)
    grad = torch.randn(q.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = torch.autograd.grad(hybrid_attention(q, k, v, backend="blocked", **rule), (q, k, v), grad)
    want = torch.autograd.grad(_reference(q, k, v, rule), (q, k, v), grad)
    for name, a, b in zip("qkv", got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=f"d{name}")


def test_float32_close_to_reference_and_custom_scale():
    q, k, v, rule = _case(CASES[5], seed=2, dtype=torch.float32)
    out = hybrid_attention(q, k, v, scale=0.3, **rule)
    want = reference_attention(q, k, v, dense_mask(2, q.shape[2], **rule), scale=0.3)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), want, atol=2e-6, rtol=1e-5)


def test_bfloat16_in_bfloat16_out_with_gradients():
    q, k, v, rule = _case(CASES[4], seed=3, dtype=torch.bfloat16, requires_grad=True)
    out = hybrid_attention(q, k, v, **rule)
    assert out.dtype == torch.bfloat16
    want = _reference(q, k, v, rule)
    torch.testing.assert_close(out.double(), want, atol=3e-2, rtol=3e-2)
    out.float().pow(2).sum().backward()
    assert all(x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all() for x in (q, k, v))


def test_gradcheck_tiny():
    q, k, v, rule = _case((9, 4, "sliding", True, 3, True, True, False), seed=4, requires_grad=True, batch=1, heads=2, dim=3)
    assert torch.autograd.gradcheck(lambda a, b, c: hybrid_attention(a, b, c, **rule), (q, k, v), fast_mode=True)
    q, k, v, rule = _case((9, 4, "block", False, 3, False, True, True), seed=4, requires_grad=True, batch=1, heads=2, dim=3)
    assert torch.autograd.gradcheck(lambda a, b, c: hybrid_attention(a, b, c, **rule), (q, k, v), fast_mode=True)


def test_fully_padded_sequence_outputs_zeros_and_finite_gradients():
    q, k, v = _inputs(6, 2, 2, 10, 4, torch.float32, requires_grad=True)
    pad = torch.ones(2, 10, dtype=torch.bool)
    pad[1] = False
    out = hybrid_attention(q, k, v, window=4, global_indices=torch.tensor([[0, 9], [3, -1]]), key_padding_mask=pad)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))
    assert torch.equal(q.grad[1], torch.zeros_like(q.grad[1]))


def test_global_key_inside_window_counted_once():
    # Key 1 is both in query 0's block and in the global set (twice): weight must stay 1/2 each.
    q = torch.zeros(1, 1, 4, 2)
    k = torch.zeros(1, 1, 4, 2)
    v = torch.arange(8.0).view(1, 1, 4, 2)
    out = hybrid_attention(q, k, v, window=2, global_indices=torch.tensor([[1, 1, -1]]))
    torch.testing.assert_close(out[0, 0, 0], (v[0, 0, 0] + v[0, 0, 1]) / 2)
    torch.testing.assert_close(out[0, 0, 2], (v[0, 0, 1] + v[0, 0, 2] + v[0, 0, 3]) / 3)


class _LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any aten op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_n_by_n_tensor_forward_and_backward():
    n, window, k = 2048, 16, 4
    q, kk, v = _inputs(7, 1, 2, n, 8, torch.float32, requires_grad=True)
    rule = dict(
        window=window,
        global_indices=torch.randint(0, n, (1, k)),
        key_padding_mask=torch.rand(1, n) > 0.1,
        global_queries_attend_all=True,
    )
    with _LargestTensor() as seen:
        hybrid_attention(q, kk, v, **rule).sum().backward()
    # Every tensor is at most a few times q's size (B·H·N·D = 32768); N×N would be 4.2M elements.
    assert seen.largest <= 4 * q.numel(), seen.largest
    for local in ("block", "sliding"):
        with _LargestTensor() as seen:
            hybrid_attention(q, kk, v, window=window, local=local, causal=True, global_indices=torch.randint(0, n, (1, n // window, k))).sum().backward()
        assert seen.largest <= 4 * q.numel(), (local, seen.largest)


def test_backends_agree():
    q, k, v, rule = _case(CASES[6], seed=8, dtype=torch.float32)
    torch.testing.assert_close(
        hybrid_attention(q, k, v, backend="blocked", **rule), hybrid_attention(q, k, v, backend="reference", **rule)
    )
