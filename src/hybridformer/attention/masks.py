"""Who-sees-whom of hybrid attention, in one place for every fast backend.

`MaskSpec` carries the seven mask arguments of `hybrid_attention` from the dispatch to a backend
(every backend is called as ``fn(q, k, v, spec)``). The blocked CPU kernel (`blocked.py`) and the FlexAttention backend (`flex.py`) both express the
visibility rule through these helpers, so the semantics of issue 2 live here once:

    query i sees key j  iff  (local(i, j) or j in the global set of i's block)
                             and (j <= i if causal) and j is not padding,

and, with `global_queries_attend_all`, a global query sees every non-padding key (j <= i if causal).
The dense float64 oracle in `reference.py` deliberately does not use this module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MaskSpec",
    "local_key_range",
    "sees_locally",
    "canonical_global_sets",
    "global_query_rows",
    "scatter_rows",
]


@dataclass(frozen=True, eq=False)
class MaskSpec:
    """Which keys each query sees, and the logit scale: the mask arguments of `hybrid_attention`.

    Built once per call (by `hybrid_attention` or by the layer) and handed unchanged to the backend.
    Tensor fields are not copied; ``eq=False`` because comparing tensors elementwise is not equality.
    """

    window: int
    """Local window size (>= 1); also the size of the query blocks of per-block global sets."""
    local: Literal["block", "sliding"] = "block"
    """"block": i // window == j // window; "sliding": |i - j| <= window // 2 (i - window < j <= i causal)."""
    global_indices: Tensor | None = None
    """LongTensor (B, K) one set per sequence, or (B, ceil(N / window), K) one per query block; -1 = empty."""
    causal: bool = False
    """Only keys j <= i."""
    key_padding_mask: Tensor | None = None
    """Bool (B, N), True = real token; None = all real."""
    global_queries_attend_all: bool = False
    """The global tokens of a (B, K) set attend to every non-padding key."""
    scale: float | None = None
    """Logit scale; None = 1 / sqrt(head dim)."""

    def scale_for(self, head_dim: int) -> float:
        """The logit scale for heads of size `head_dim`."""
        return 1.0 / math.sqrt(head_dim) if self.scale is None else float(self.scale)

    def replace(self, **changes) -> MaskSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def rule(self) -> dict:
        """The local rule as keyword arguments of `sees_locally` / `local_key_range`."""
        return dict(window=self.window, local=self.local, causal=self.causal)


def local_key_range(q_first, q_last, *, window: int, local: str, causal: bool):
    """Inclusive range [lo, hi] of key positions that queries q_first..q_last may see locally.

    Works on ints or integer tensors; bounds may fall outside [0, N) and are for the caller to clip.
    `sees_locally` is the exact rule inside the range.
    """
    if local == "block":
        lo = (q_first // window) * window
        hi = q_last if causal else (q_last // window) * window + window - 1
    elif causal:
        lo, hi = q_first - window + 1, q_last
    else:
        lo, hi = q_first - window // 2, q_last + window // 2
    return lo, hi


def sees_locally(q_idx: Tensor, kv_idx: Tensor, *, window: int, local: str, causal: bool) -> Tensor:
    """Whether query position(s) `q_idx` see key position(s) `kv_idx` through the local window.

    Elementwise on broadcastable integer tensors (also valid inside a FlexAttention `mask_mod`).
    Includes the causal restriction; padding and sequence bounds are the caller's business.

    Args:
        q_idx: query positions i.
        kv_idx: key positions j.
        window: local window size.
        local: "block" (same i // window) or "sliding" (|i - j| <= window // 2; i - window < j <= i
            when causal).
        causal: restrict to j <= i.

    Returns:
        Bool tensor of the broadcast shape.
    """
    if local == "block":
        near = (q_idx // window) == (kv_idx // window)
    elif causal:
        near = (kv_idx > q_idx - window) & (kv_idx <= q_idx)
    else:
        near = (q_idx - kv_idx).abs() <= window // 2
    if causal:
        near = near & (kv_idx <= q_idx)
    return near


def canonical_global_sets(global_indices: Tensor | None, n: int, window: int) -> Tensor | None:
    """Normalise global indices to (B, G, K) sets where each key appears at most once.

    A key listed twice in one set would be counted twice by a kernel that simply gathers the listed
    keys; duplicates (and every negative entry) become -1, the empty slot. Slot order is irrelevant
    to the result (the set is what matters), so the slots come back sorted.

    Args:
        global_indices: LongTensor (B, K) (one set per sequence) or (B, ceil(N / window), K) (one set
            per query block), -1 marking an empty slot; or None.
        n: sequence length N.
        window: local window size, which defines the query blocks.

    Returns:
        LongTensor (B, G, K) with G = 1 (per sequence) or ceil(N / window) (per block), or None.
    """
    if global_indices is None:
        return None
    sets = global_indices if global_indices.dim() == 3 else global_indices.unsqueeze(1)  # (B, G, K)
    if sets.shape[1] not in (1, math.ceil(n / window)):
        expected = f"(B, K) or (B, {math.ceil(n / window)}, K)"
        raise ValueError(f"global_indices: expected {expected}, got {tuple(global_indices.shape)}")
    sets = sets.clamp(min=-1).sort(dim=-1).values
    repeated = torch.zeros_like(sets, dtype=torch.bool)
    repeated[..., 1:] = sets[..., 1:] == sets[..., :-1]
    return sets.masked_fill(repeated, -1)


def global_query_rows(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    sets: Tensor,
    spec: MaskSpec,
) -> Tensor:
    """`out` with the rows of global queries replaced by attention over every key.

    For `global_queries_attend_all`: global query i sees every non-padding key (j <= i if causal).
    Computed for the <= K global queries only, O(N·K), and written with `scatter_rows` (no host
    sync). A global query that sees no key gets zeros.

    Args:
        q, k, v: (B, H, N, D).
        out: the backend's (B, H, N, D) result.
        sets: canonical per-sequence global sets (B, 1, K) from `canonical_global_sets`.
        spec: the call's mask (padding, causality, scale).
    """
    batch, heads, n, dim = q.shape
    key_padding_mask = spec.key_padding_mask
    pos = sets[:, 0]  # (B, K), -1 = empty slot, no duplicates
    rows = q.gather(2, pos.clamp(min=0)[:, None, :, None].expand(batch, heads, -1, dim))  # (B, H, K, D)
    visible = torch.ones(batch, 1, n, dtype=torch.bool, device=q.device)
    if key_padding_mask is not None:
        visible = key_padding_mask.view(batch, 1, n)
    if spec.causal:
        visible = visible & (torch.arange(n, device=q.device) <= pos.unsqueeze(-1))  # (B, K, N)
    rows = F.scaled_dot_product_attention(rows, k, v, attn_mask=visible.unsqueeze(1), scale=spec.scale_for(dim))
    return scatter_rows(out, pos, rows)


def scatter_rows(out: Tensor, positions: Tensor, rows: Tensor) -> Tensor:
    """`out` with row positions[b, m] of sequence b replaced by rows[b, :, m]; slots -1 write nothing.

    Shape-static (no `nonzero`, no host sync): empty slots write into an extra row N that is dropped.
    Out of place, differentiable with respect to `out` and `rows`.

    Args:
        out: (B, H, N, D).
        positions: LongTensor (B, K), each position at most once, -1 = empty slot.
        rows: (B, H, K, D).

    Returns:
        (B, H, N, D).
    """
    batch, heads, n, dim = out.shape
    target = torch.where(positions < 0, n, positions)[:, None, :, None].expand(batch, heads, -1, dim)
    extended = torch.cat([out, out.new_zeros(batch, heads, 1, dim)], dim=2)  # (B, H, N + 1, D)
    return extended.scatter(2, target, rows.to(out.dtype))[:, :, :n]
