"""The FlexAttention backend: its BlockMask against the dense reference.

FlexAttention has no backward on CPU and is only fast compiled on CUDA. On CPU we check the
forward through FlexAttention's eager path and that the sparse block lists cover every visible
pair; the compiled forward + backward run when CUDA is available.
"""

import math
import warnings

import pytest
import torch
from torch.nn.attention.flex_attention import create_mask

from hybridformer.attention import dense_mask, hybrid_attention, reference_attention
from hybridformer.attention.flex import BLOCK, hybrid_block_mask
from hybridformer.attention.masks import MaskSpec, canonical_global_sets

# (n, window, local, causal, k, per_block, padding)
CASES = [
    (300, 128, "block", False, 5, False, True),
    (300, 128, "sliding", True, 5, True, True),
    (130, 16, "sliding", False, 7, False, False),
    (257, 64, "block", True, 70, True, True),
    (1, 4, "block", False, None, False, False),
]


def _case(case, device="cpu", dtype=torch.float32, requires_grad=False, seed=0):
    n, window, local, causal, k, per_block, padding = case
    gen = torch.Generator().manual_seed(seed)
    q, kk, v = (torch.randn(2, 2, n, 8, generator=gen).to(device, dtype).requires_grad_(requires_grad) for _ in range(3))
    idx = None
    if k is not None:
        shape = (2, math.ceil(n / window), k) if per_block else (2, k)
        idx = torch.randint(-1, n, shape, generator=gen).to(device)
    pad = None
    if padding:
        pad = torch.rand(2, n, generator=gen) > 0.3
        pad[0, : n // 2] = False
        pad = pad.to(device)
    rule = dict(
        window=window,
        local=local,
        causal=causal,
        global_indices=idx,
        key_padding_mask=pad,
        global_queries_attend_all=idx is not None and not per_block,
    )
    return q, kk, v, rule


@pytest.mark.parametrize("case", CASES, ids=str)
def test_eager_forward_matches_reference_on_cpu(case):
    q, k, v, rule = _case(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "called without torch.compile": expected here
        out = hybrid_attention(q, k, v, backend="flex", **rule)
    want = reference_attention(q, k, v, dense_mask(2, q.shape[2], **rule))
    torch.testing.assert_close(out.double(), want, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_block_lists_cover_every_visible_pair(case):
    n, window, local, causal, _, _, _ = case
    q, _, _, rule = _case(case)
    sets = canonical_global_sets(rule["global_indices"], n, window)
    mask = hybrid_block_mask(MaskSpec(**rule), sets, batch=2, n=n, device="cpu")
    kv_len = mask.seq_lengths[1]
    visible = create_mask(mask.mask_mod, 2, 1, n, kv_len, device="cpu").any(dim=(0, 1))  # (N, N + G·K) over the batch
    pad_q, pad_kv = -n % BLOCK, -kv_len % BLOCK
    blocks = torch.nn.functional.pad(visible, (0, pad_kv, 0, pad_q)).unflatten(0, (-1, BLOCK)).unflatten(2, (-1, BLOCK))
    needed = blocks.any(dim=(1, 3))  # (query blocks, key blocks)
    listed = mask.to_dense()[0, 0].bool()
    assert not (needed & ~listed).any(), "a visible (query, key) pair lies in a block the BlockMask skips"


@pytest.mark.parametrize("local", ["block", "sliding"])
def test_block_lists_are_sparse(local):
    # N = 4096: 32 query blocks of 128; each needs <= 3 local key blocks and 1 block of global slots.
    sets = canonical_global_sets(torch.randint(0, 4096, (1, 8)), 4096, 128)
    mask = hybrid_block_mask(MaskSpec(window=128, local=local), sets, batch=1, n=4096, device="cpu")
    listed = mask.to_dense()[0, 0]
    assert listed.shape == (32, 33)
    assert listed.sum(dim=1).max() <= 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention's fused kernel and backward need CUDA")
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_forward_and_backward_on_cuda(case, dtype):
    q, k, v, rule = _case(case, device="cuda", dtype=dtype, requires_grad=True)
    out = hybrid_attention(q, k, v, backend="flex", **rule)
    assert out.dtype == dtype
    want = reference_attention(q, k, v, dense_mask(2, q.shape[2], **rule))
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    ref = torch.autograd.grad(want, (q, k, v), grad.double())
    for name, a, b in zip("qkv", got, ref):
        torch.testing.assert_close(a.double(), b.to(a.dtype).double(), atol=5 * tol, rtol=5 * tol, msg=f"d{name}")
