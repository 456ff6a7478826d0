"""Dense float64 reference of hybrid attention — the test oracle, O(N²), never used by models.

Written straight from the definition in issue 2 and independently of the fast kernels
(`blocked.py`, `flex.py`, `dense.py`, and the visibility helpers of `masks.py`: only the `MaskSpec`
container comes from there), so that comparing against it tests them. It builds the full
N×N boolean mask, which is exactly what the real kernels must never do: use it in tests, in the
benchmark's "naive" variant and as the `backend="reference"` debugging aid only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hybridformer.attention.masks import MaskSpec

__all__ = ["dense_mask", "all_keys_mask", "reference_attention"]


def dense_mask(
    batch_size: int,
    n: int,
    spec: MaskSpec | None = None,
    *,
    device: torch.device | str | None = None,
    **fields,
) -> Tensor:
    """The boolean "query i sees key j" matrix of hybrid attention.

    Query i sees key j iff (local(i, j) or j is in the global set of i's block) and (j <= i if causal)
    and j is not padding. With `global_queries_attend_all` (per-sequence indices), a global query i
    sees every non-padding key (j <= i if causal). `local="block"`: i // window == j // window;
    `local="sliding"`: |i - j| <= window // 2, or i - window < j <= i when causal.

    Args:
        batch_size: B.
        n: sequence length N.
        spec: the mask (its scale is not used); or None and the fields given as keywords.
        device: device of the result (defaults to that of the index/mask tensors, else CPU).
        **fields: `MaskSpec` fields, when `spec` is None: window (>= 1), local ("block" or
            "sliding"), global_indices (LongTensor (B, K) or (B, ceil(N / window), K); -1 marks an
            empty slot), causal, key_padding_mask (bool (B, N), True = real token),
            global_queries_attend_all.

    Returns:
        Bool tensor (B, N, N); entry [b, i, j] is True iff query i sees key j.
    """
    spec = MaskSpec(**fields) if spec is None else spec
    window, local, causal = spec.window, spec.local, spec.causal
    global_indices, key_padding_mask = spec.global_indices, spec.key_padding_mask
    if device is None:
        given = global_indices if global_indices is not None else key_padding_mask
        device = given.device if given is not None else "cpu"
    i = torch.arange(n, device=device).view(n, 1)
    j = torch.arange(n, device=device).view(1, n)
    if local == "block":
        near = (i // window) == (j // window)
    elif local == "sliding":
        near = (j > i - window) & (j <= i) if causal else (i - j).abs() <= window // 2
    else:
        raise ValueError(f"local: expected 'block' or 'sliding', got {local!r}")
    sees = near.expand(batch_size, n, n).clone()  # (B, N, N)

    global_query = torch.zeros(batch_size, n, dtype=torch.bool, device=device)
    if global_indices is not None:
        per_block = global_indices if global_indices.dim() == 3 else global_indices.unsqueeze(1)
        # member[b, g, j]: key j is in global set g of sequence b; an empty slot (-1) writes into an
        # extra column n that is dropped afterwards.
        member = torch.zeros(*per_block.shape[:2], n + 1, dtype=torch.bool, device=device)
        member.scatter_(2, torch.where(per_block < 0, n, per_block).to(device), True)
        member = member[..., :n]  # (B, G, N)
        if global_indices.dim() == 3:
            sees |= member[:, torch.arange(n, device=device) // window]  # (B, N, N): set of i's block
        else:
            sees |= member  # (B, 1, N): one set for every query
        if spec.global_queries_attend_all:
            if global_indices.dim() == 3:
                raise ValueError("global_queries_attend_all: needs global_indices of shape (B, K)")
            global_query = member[:, 0]  # (B, N)
    sees |= global_query.unsqueeze(-1)
    # (j <= i if causal) and j is not padding
    return sees & all_keys_mask(batch_size, n, n, causal=causal, key_padding_mask=key_padding_mask, device=device)


def all_keys_mask(
    batch_size: int,
    n_queries: int,
    n_keys: int,
    *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The "query i sees key j" matrix of dense attention, square or rectangular (Nq != Nk).

    Every query sees every real key; with `causal` the queries are the last Nq of the Nk positions
    (cached decoding), so query i, at position Nk - Nq + i, sees keys j <= Nk - Nq + i.

    Args:
        batch_size: B.
        n_queries: Nq.
        n_keys: Nk.
        causal: restrict query i to keys at positions <= its own.
        key_padding_mask: bool (B, Nk), True = real key.
        device: device of the result (defaults to that of the mask, else CPU).

    Returns:
        Bool tensor (B, Nq, Nk).
    """
    if device is None:
        device = key_padding_mask.device if key_padding_mask is not None else "cpu"
    query_position = (n_keys - n_queries + torch.arange(n_queries, device=device)).view(n_queries, 1)
    key_position = torch.arange(n_keys, device=device).view(1, n_keys)
    sees = torch.ones(batch_size, n_queries, n_keys, dtype=torch.bool, device=device)
    if causal:
        sees &= key_position <= query_position
    if key_padding_mask is not None:
        sees &= key_padding_mask.to(device).view(batch_size, 1, n_keys)
    return sees


def reference_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float | None = None
) -> Tensor:
    """Dense masked softmax attention computed in float64.

    Args:
        q: (B, H, Nq, D); k: (B, H, Nk, D); v: (B, H, Nk, Dv), any floating dtype; cast to float64
            (differentiably). Nq == Nk == N for hybrid attention.
        mask: bool (B, Nq, Nk), (B, 1, Nq, Nk) or (B, H, Nq, Nk); True = query sees key.
        scale: score scale, default 1 / sqrt(D).

    Returns:
        (B, H, Nq, Dv) float64. A query that sees no key outputs zeros.
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)  # (B, 1, Nq, Nk)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    q, k, v = q.double(), k.double(), v.double()
    scores = (q @ k.transpose(-1, -2)) * scale  # (B, H, Nq, Nk)
    scores = scores.masked_fill(~mask, float("-inf"))
    sees_any = mask.any(dim=-1, keepdim=True)  # (B, 1|H, Nq, 1)
    # A row that sees nothing would softmax to NaN; give it finite scores, then zero its output.
    probs = torch.softmax(scores.masked_fill(~sees_any, 0.0), dim=-1)
    return (probs @ v) * sees_any
