"""Softmax attention over small explicit key sets: the gated global branch and cached decoding.

Unlike the local windows (the blocked kernel), these keys are an arbitrary handful per query block —
the K selected tokens, or the ≤ window + K keys a decoding step sees — so a dense softmax over that
handful, O(N·K) in all, is the whole algorithm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridformer.attention.masks import MaskSpec, scatter_rows

__all__ = ["softmax_attend", "selected_attention"]


def softmax_attend(logits: Tensor, sees: Tensor, values: Tensor) -> Tensor:
    """Softmax over the keys a query sees, times the values; a query that sees nothing gets zeros.

    The softmax runs in at least float32 (bf16 inputs), float64 stays float64.

    Args:
        logits: (..., Q, L) scaled scores.
        sees: bool, broadcastable to `logits`: query sees key.
        values: (..., L, D).

    Returns:
        (..., Q, D) in the dtype of `values`.
    """
    sees_any = sees.any(dim=-1, keepdim=True)
    # A row that sees nothing would softmax to NaN: give it finite logits, then zero its output.
    logits = logits.masked_fill(~sees, float("-inf")).masked_fill(~sees_any, 0.0)
    probs = torch.softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))
    return (probs.to(values.dtype) @ values) * sees_any


def selected_attention(q: Tensor, k: Tensor, v: Tensor, spec: MaskSpec, key_bias: Tensor | None = None) -> Tensor:
    """Each query attends to only its selected keys, one softmax: the gated global branch, O(N·K).

    Selected keys are never padding (selection skips it), and per-block sets only hold positions of
    earlier blocks, so neither padding nor causality needs a mask here.

    Args:
        q, k, v: (B, H, N, D).
        spec: the mask. Read here: `global_indices` ((B, K) one set per sequence, or
            (B, ceil(N / window), K) one per query block; -1 = empty slot; not None), `window` (query
            block size of per-block sets), `scale`, and for `global_queries_attend_all` (with (B, K)
            sets, a selected query attends to every real key instead) `key_padding_mask`.
        key_bias: (B, N) float added to the logits of key j, or None.

    Returns:
        (B, H, N, D); a query whose set is empty outputs zeros.
    """
    batch, heads, n, dim = q.shape
    global_indices, window, scale = spec.global_indices, spec.window, spec.scale_for(dim)
    sets = global_indices if global_indices.dim() == 3 else global_indices.unsqueeze(1)  # (B, G, K)
    n_sets, k_slots = sets.shape[1:]
    flat = sets.reshape(batch, n_sets * k_slots).clamp(min=0)  # (B, G·K), empty slots read token 0
    take = flat[:, None, :, None].expand(batch, heads, n_sets * k_slots, dim)
    k_sel = k.gather(2, take).view(batch, heads, n_sets, k_slots, dim)  # (B, H, G, K, D)
    v_sel = v.gather(2, take).view(batch, heads, n_sets, k_slots, dim)
    if global_indices.dim() == 3:
        padded = F.pad(q, (0, 0, 0, n_sets * window - n))  # (B, H, G·window, D)
        q_sets = padded.view(batch, heads, n_sets, window, dim)  # (B, H, G, window, D)
    else:
        q_sets = q.unsqueeze(2)  # (B, H, 1, N, D)
    logits = (q_sets @ k_sel.transpose(-1, -2)) * scale  # (B, H, G, Q, K)
    if key_bias is not None:
        logits = logits + key_bias.gather(1, flat).view(batch, 1, n_sets, 1, k_slots).to(logits.dtype)
    sees = (sets >= 0)[:, None, :, None, :]  # (B, 1, G, 1, K)
    out = softmax_attend(logits, sees, v_sel)  # (B, H, G, Q, D)
    out = out.reshape(batch, heads, -1, dim)[:, :, :n]  # (B, H, N, D)
    if spec.global_queries_attend_all:
        out = _global_queries_over_all(
            out, q, k, v, global_indices, scale=scale, key_bias=key_bias, key_padding_mask=spec.key_padding_mask
        )
    return out


def _global_queries_over_all(
    out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    global_indices: Tensor,
    *,
    scale: float,
    key_bias: Tensor | None,
    key_padding_mask: Tensor | None,
) -> Tensor:
    """Overwrite the rows of selected queries (B, K) with attention over every real key, O(N·K)."""
    batch, heads, n, dim = q.shape
    take = global_indices.clamp(min=0)[:, None, :, None].expand(batch, heads, -1, dim)
    logits = (q.gather(2, take) @ k.transpose(-1, -2)) * scale  # (B, H, K, N)
    if key_bias is not None:
        logits = logits + key_bias[:, None, None, :].to(logits.dtype)
    real = key_padding_mask
    if real is None:
        real = torch.ones(batch, n, dtype=torch.bool, device=q.device)
    sees = real[:, None, None, :]  # (B, 1, 1, N)
    rows = softmax_attend(logits, sees, v)  # (B, H, K, D)
    return scatter_rows(out, global_indices, rows)
