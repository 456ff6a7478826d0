"""FlexAttention backend (CUDA): hybrid attention as a block-sparse `BlockMask`, forward + backward.

The K global keys of each set are gathered and appended after the N sequence keys, so every query
attends over one extended key axis `[k_0 .. k_{N-1}, g_0 .. g_{G·K-1}]`:

    kv < N   (local)   sees_locally(q, kv) and kv is a real token
    kv >= N  (global)  slot kv - N belongs to q's set, names a real token j that q does not
                       already see locally (each key counted once), and j <= q when causal

The BlockMask lists, per 128-query block, only the key blocks of its local range and of its global
set, so the cost is O(N·(window + K)); it is built from index arithmetic, never by evaluating the
mask over all N² pairs. The visibility rule comes from `masks.py`, shared with the blocked kernel.
Global queries with `global_queries_attend_all` are computed by `masks.global_query_rows`.

On CUDA the kernel is `torch.compile`d (FlexAttention's only fast path). On CPU this backend runs
FlexAttention's eager reference, which materialises the scores: use it there for tests only.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from hybridformer.attention.masks import (
    MaskSpec,
    canonical_global_sets,
    global_query_rows,
    local_key_range,
    sees_locally,
)

__all__ = ["flex_attention_backend", "hybrid_block_mask"]

BLOCK = 128
"""FlexAttention's sparse block size (queries and keys)."""


@functools.cache
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


def _block_lists(n: int, kv_len: int, window: int, local: str, causal: bool, n_sets: int, k: int) -> list[list[int]]:
    """Key blocks each query block may touch: its local key range, then its global set slots."""
    rows = []
    for first in range(0, n, BLOCK):
        last = min(first + BLOCK, n) - 1
        lo, hi = local_key_range(first, last, window=window, local=local, causal=causal)
        blocks = set(range(max(lo, 0) // BLOCK, min(hi, n - 1) // BLOCK + 1))
        if n_sets:
            set_lo, set_hi = (0, 0) if n_sets == 1 else (first // window, last // window)
            slot_lo, slot_hi = n + set_lo * k, n + (set_hi + 1) * k - 1
            blocks |= set(range(slot_lo // BLOCK, min(slot_hi, kv_len - 1) // BLOCK + 1))
        rows.append(sorted(blocks))
    return rows


def hybrid_block_mask(spec: MaskSpec, sets: Tensor | None, *, batch: int, n: int, device: torch.device) -> BlockMask:
    """The BlockMask of hybrid attention over the extended key axis (N + G·K keys).

    Args:
        spec: the mask: its local rule (see `masks.sees_locally`) and key padding.
        sets: canonical global sets (B, G, K) from `masks.canonical_global_sets`, or None.
        batch: B.
        n: sequence length N.
        device: where the mask lives.
    """
    window, local, causal, key_padding_mask = spec.window, spec.local, spec.causal, spec.key_padding_mask
    n_sets, k = (0, 0) if sets is None else (sets.shape[1], sets.shape[2])
    kv_len = n + n_sets * k
    real = torch.ones(batch, n, dtype=torch.bool, device=device) if key_padding_mask is None else key_padding_mask
    flat_sets = None if sets is None else sets.flatten(1)  # (B, G·K)
    rule = spec.rule()

    def mask_mod(b, h, q_idx, kv_idx):
        local_ok = sees_locally(q_idx, kv_idx, **rule) & real[b, kv_idx.clamp(max=n - 1)] & (kv_idx < n)
        if flat_sets is None:
            return local_ok
        slot = (kv_idx - n).clamp(0, n_sets * k - 1)
        key = flat_sets[b, slot]
        query_set = q_idx // window if n_sets > 1 else 0
        global_ok = (
            (kv_idx >= n)
            & (key >= 0)
            & (slot // k == query_set)
            & real[b, key.clamp(min=0)]
            & ~sees_locally(q_idx, key, **rule)
        )
        if causal:
            global_ok = global_ok & (key <= q_idx)
        return local_ok | global_ok

    rows = _block_lists(n, kv_len, window, local, causal, n_sets, k)
    # BlockMask's layout: one row of indices per query block, as wide as the number of key blocks;
    # the first kv_num_blocks entries are used.
    kv_indices = torch.zeros(1, 1, len(rows), math.ceil(kv_len / BLOCK), dtype=torch.int32)
    for i, r in enumerate(rows):
        kv_indices[0, 0, i, : len(r)] = torch.tensor(r, dtype=torch.int32)
    kv_num_blocks = torch.tensor([len(r) for r in rows], dtype=torch.int32).view(1, 1, -1)
    return BlockMask.from_kv_blocks(
        kv_num_blocks.to(device),
        kv_indices.to(device),
        BLOCK_SIZE=BLOCK,
        mask_mod=mask_mod,
        seq_lengths=(n, kv_len),
    )


def _extend(x: Tensor, sets: Tensor | None) -> Tensor:
    """(B, H, N, D) -> (B, H, N + G·K, D): the sequence followed by every set's keys (slot -1 reads 0)."""
    if sets is None:
        return x
    batch, heads, _, dim = x.shape
    flat = sets.clamp(min=0).flatten(1)  # (B, G·K)
    return torch.cat([x, x.gather(2, flat[:, None, :, None].expand(batch, heads, -1, dim))], dim=2)


def flex_attention_backend(q: Tensor, k: Tensor, v: Tensor, spec: MaskSpec) -> Tensor:
    """Hybrid attention through FlexAttention (inputs already validated by `hybrid_attention`).

    Args and result as the blocked backend (`fn(q, k, v, spec)`). Compiled on CUDA, eager elsewhere.
    """
    batch, _, n, dim = q.shape
    scale = spec.scale_for(dim)
    sets = canonical_global_sets(spec.global_indices, n, spec.window)
    block_mask = hybrid_block_mask(spec, sets, batch=batch, n=n, device=q.device)
    attend = _compiled_flex() if q.is_cuda else flex_attention
    out = attend(q, _extend(k, sets), _extend(v, sets), block_mask=block_mask, scale=scale)
    if spec.global_queries_attend_all and sets is not None:
        out = global_query_rows(q, k, v, out, sets, spec)
    return out
