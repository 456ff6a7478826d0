"""Dense attention on `F.scaled_dot_product_attention`: the one path for every "all keys" attention.

It serves

- full self-attention (``HybridAttention(kind="full")``, and the hybrid layer when one window block
  holds the whole sequence): Nq == Nk;
- cross-attention: queries and keys of different lengths and sources, with a per-example key mask
  (e.g. a fusion layer over the concatenated keys of several modalities, some absent);
- cached causal decoding: the Nq new tokens are the LAST Nq of the Nk keys, query i sitting at position
  ``Nk - Nq + i`` (with Nq == Nk this is ordinary causal attention).

A query that sees no key (all its keys are padding) outputs zeros, not NaN, and passes no gradient.
Only metadata (shapes, dtypes, devices) is checked here, so the function never syncs with the host and
traces into one `torch.compile` graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dense_attention"]


def _check(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, causal: bool) -> None:
    """Raise ValueError naming the argument for a shape/dtype that cannot work (metadata only)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 4:
            raise ValueError(f"{name}: expected shape (B, H, N, D), got {tuple(x.shape)}")
    batch, heads, nq, dim = q.shape
    nk = k.shape[2]
    if k.shape[:2] != (batch, heads) or k.shape[3] != dim:
        raise ValueError(f"k: expected shape (B, H, Nk, D) = ({batch}, {heads}, Nk, {dim}) for q "
                         f"{tuple(q.shape)}, got {tuple(k.shape)}")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v: expected shape (B, H, Nk, Dv) = {tuple(k.shape[:3])} + (Dv,) to match k, "
                         f"got {tuple(v.shape)}")
    if causal and nq > nk:
        raise ValueError(f"causal: the {nq} queries must be the last of the {nk} keys (Nq <= Nk), "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)}")
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise ValueError(f"key_padding_mask: expected a bool tensor (True = real key), got {key_padding_mask.dtype}")
        if tuple(key_padding_mask.shape) != (batch, nk):
            raise ValueError(f"key_padding_mask: expected shape (B, Nk) = {(batch, nk)}, "
                             f"got {tuple(key_padding_mask.shape)}")


def dense_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_padding_mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """Softmax attention of every query over every (visible) key, through fused SDPA.

    Args:
        q: (B, H, Nq, D) queries.
        k: (B, H, Nk, D) keys; Nk may differ from Nq (cross-attention, cached decoding).
        v: (B, H, Nk, Dv) values.
        key_padding_mask: bool (B, Nk), True = real key; None = all real.
        causal: query i (at position Nk - Nq + i) sees keys j <= Nk - Nq + i; needs Nq <= Nk.
        scale: logit scale, default 1 / sqrt(D).
        dropout_p: dropout on the attention probabilities; pass 0 outside training (SDPA applies it
            whenever it is > 0).

    Returns:
        (B, H, Nq, Dv) in the dtype of q; zeros for a query that sees no key.

    Raises:
        ValueError: naming the argument, for inconsistent shapes or a non-bool key mask.
    """
    _check(q, k, v, key_padding_mask, causal)
    nq, nk = q.shape[2], k.shape[2]
    if key_padding_mask is None:
        if not causal or nq == nk:
            # SDPA's own is_causal aligns the causal mask top-left, which is right for Nq == Nk.
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal, scale=scale)
        # Every query sees key 0 at least, so no row is empty.
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=_causal_mask(nq, nk, q.device), dropout_p=dropout_p, scale=scale
        )
    sees = key_padding_mask[:, None, None, :]  # (B, 1, 1, Nk)
    if causal:
        sees = sees & _causal_mask(nq, nk, q.device)  # (B, 1, Nq, Nk)
    sees_any = sees.any(dim=-1, keepdim=True)  # (B, 1, 1|Nq, 1)
    # SDPA returns NaN for a row that sees nothing: let it see everything, then zero it.
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=sees | ~sees_any, dropout_p=dropout_p, scale=scale)
    return out * sees_any


def _causal_mask(nq: int, nk: int, device: torch.device) -> Tensor:
    """Bool (Nq, Nk): query i, at position Nk - Nq + i, sees key j <= Nk - Nq + i."""
    return torch.ones(nq, nk, dtype=torch.bool, device=device).tril(diagonal=nk - nq)
