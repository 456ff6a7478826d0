"""KV cache for step-by-step causal decoding with `HybridAttention`, O(window + global_k) per token.

The cache keeps only what a future query can still see:

- local keys/values: for ``local="block"`` the current block's tokens (cleared when the block ends);
  for ``local="sliding"`` the last ``window`` tokens. With their validity (padding) flags and, for the
  hybrid kind, their selection scores.
- the global set in force for the current query block: the top-``global_k`` tokens among all earlier
  blocks, with their keys/values, scores and positions. When a block ends its tokens are merged into
  the set with the same :func:`~hybridformer.attention.scorer.merge_topk` the full forward uses, so
  decoding selects exactly the tokens the full causal forward selects, and outputs match it.

Memory per layer (B sequences, H heads of size D, bytes b per element): about
``2·B·H·(window + global_k)·D·b`` for keys and values plus ``B·(window + global_k)`` scores, flags
and positions — independent of the sequence length. ``kind="full"`` (dense causal decoding) keeps every
token instead: ``2·B·H·N·D·b``.

A new token attends with one small dense softmax over ≤ window + K keys, so a step costs
O(H·D·(window + K)).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hybridformer.attention.dense import dense_attention
from hybridformer.attention.scorer import merge_topk
from hybridformer.attention.selected import softmax_attend

__all__ = ["KVCache", "CachedAttention", "cached_attention"]


@dataclass
class KVCache:
    """Decoding state of one causal attention layer. Create it empty (``KVCache()``), pass it to every
    call of the layer; the layer fills and updates it in place. One cache per layer and per batch.
    """

    keys: Tensor | None = None
    """(B, H, L, D) local keys of the last L tokens (L <= window; every token for kind="full")."""
    values: Tensor | None = None
    """(B, H, L, D) their values."""
    valid: Tensor | None = None
    """Bool (B, L): the local token is real (not padding)."""
    scores: Tensor | None = None
    """(B, L) float32 selection scores of the local tokens (-inf = padding); hybrid kind only."""
    global_keys: Tensor | None = None
    """(B, H, K, D) keys of the global set in force for the current query block."""
    global_values: Tensor | None = None
    """(B, H, K, D) their values."""
    global_scores: Tensor | None = None
    """(B, K) float32 their scores, -inf in empty slots."""
    global_positions: Tensor | None = None
    """(B, K) their positions in the sequence, -1 in empty slots."""
    length: int = 0
    """Tokens seen so far, i.e. the position of the next token."""
    compressed: Any = None
    """selection="compressed" only: its :class:`~hybridformer.attention.compressed_cache.CompressedState`
    (every token's keys/values, block summaries; the fields above stay empty)."""
    pooled: Any = None
    """selection="pooled" only: its :class:`~hybridformer.attention.pooled_cache.PooledState` (every
    token's keys/values, the current block's queries; the fields above stay empty)."""

    def fork(self) -> KVCache:
        """An independent copy (a beam that branches). The tensors above are shared: an update builds
        new ones, never writes in place. The selector states are objects the layer updates in place
        (and the pooled one's key/value buffers are written in place), so each copy gets its own."""
        twin = copy.copy(self)
        if self.compressed is not None:
            twin.compressed = copy.copy(self.compressed)
        if self.pooled is not None:
            twin.pooled = self.pooled.fork()
        return twin

    @property
    def _selector_state(self) -> Any:
        return self.compressed if self.compressed is not None else self.pooled

    def check_batch(self, batch: int) -> None:
        """Raise ValueError if this cache was filled for a different batch size."""
        keys = self.keys if self._selector_state is None else self._selector_state.keys
        if keys is not None and keys.shape[0] != batch:
            raise ValueError(
                f"cache: holds {keys.shape[0]} sequences, got hidden_states with batch size {batch}"
            )

    def memory_bytes(self) -> int:
        """Bytes held by the cache's tensors."""
        held = (
            self.keys, self.values, self.valid, self.scores,
            self.global_keys, self.global_values, self.global_scores, self.global_positions,
        )
        extra = 0 if self._selector_state is None else self._selector_state.memory_bytes()
        return extra + sum(t.numel() * t.element_size() for t in held if t is not None)

    def _start(self, like: Tensor, global_k: int, hybrid: bool) -> None:
        batch, heads, _, dim = like.shape
        self.keys = like.new_zeros(batch, heads, 0, dim)
        self.values = like.new_zeros(batch, heads, 0, dim)
        self.valid = torch.zeros(batch, 0, dtype=torch.bool, device=like.device)
        if hybrid:
            self.scores = torch.zeros(batch, 0, device=like.device)
            self.global_keys = like.new_zeros(batch, heads, global_k, dim)
            self.global_values = like.new_zeros(batch, heads, global_k, dim)
            self.global_scores = torch.full((batch, global_k), float("-inf"), device=like.device)
            self.global_positions = torch.full((batch, global_k), -1, dtype=torch.long, device=like.device)

    def _append(self, k: Tensor, v: Tensor, valid: Tensor, scores: Tensor | None) -> None:
        if k.shape[1] != self.keys.shape[1] or k.shape[3] != self.keys.shape[3]:
            raise ValueError(
                f"cache: holds heads/head size {tuple(self.keys.shape[1::2])}, got keys {tuple(k.shape)}"
            )
        self.keys = torch.cat([self.keys, k], dim=2)
        self.values = torch.cat([self.values, v], dim=2)
        self.valid = torch.cat([self.valid, valid], dim=1)
        if scores is not None:
            self.scores = torch.cat([self.scores, scores], dim=1)
        self.length += k.shape[2]

    def _keep_last(self, count: int) -> None:
        start = self.keys.shape[2] - count
        self.keys, self.values, self.valid = self.keys[:, :, start:], self.values[:, :, start:], self.valid[:, start:]
        if self.scores is not None:
            self.scores = self.scores[:, start:]

    def _close_block(self, window: int) -> None:
        """The last `window` local tokens form a finished block: merge them into the global set."""
        batch, heads, _, dim = self.keys.shape
        positions = torch.arange(self.length - window, self.length, device=self.keys.device)
        top = merge_topk(
            self.global_scores, self.global_positions, self.scores[:, -window:], positions.expand(batch, window)
        )
        take = top.slots[:, None, :, None].expand(batch, heads, -1, dim)  # (B, H, K, D)
        keys = torch.cat([self.global_keys, self.keys[:, :, -window:]], dim=2)  # (B, H, K + window, D)
        values = torch.cat([self.global_values, self.values[:, :, -window:]], dim=2)
        self.global_keys, self.global_values = keys.gather(2, take), values.gather(2, take)
        self.global_scores, self.global_positions = top.scores, top.indices


@dataclass
class CachedAttention:
    """Result of :func:`cached_attention`."""

    output: Tensor
    """(B, H, T, D) attention output of the new tokens (before the output projection)."""
    global_indices: Tensor | None
    """(B, S, K) global set in force for each of the S query blocks the new tokens fall in; -1 = empty.
    None for kind="full" or K = 0."""


def _attend_segment(
    cache: KVCache,
    q: Tensor,
    first: int,
    *,
    gates: Tensor | None,
    kind: str,
    window: int,
    local: str,
    scale: float,
) -> Tensor:
    """Attention of queries at positions first.. (all in one block) over the cache; (B, H, S, D)."""
    if kind == "full":
        # The cache holds every token and the queries are its last S: dense causal attention.
        return dense_attention(q, cache.keys, cache.values, key_padding_mask=cache.valid, causal=True, scale=scale)
    device = q.device
    n_local = cache.keys.shape[2]
    q_pos = torch.arange(first, first + q.shape[2], device=device)[:, None]  # (S, 1)
    k_pos = torch.arange(cache.length - n_local, cache.length, device=device)[None, :]  # (1, L)
    near = (k_pos <= q_pos) & ((k_pos // window == q_pos // window) if local == "block" else (k_pos > q_pos - window))
    sees_local = (near[None] & cache.valid[:, None, :])[:, None]  # (B, 1, S, L)
    local_logits = (q @ cache.keys.transpose(-1, -2)) * scale  # (B, H, S, L)
    if cache.global_keys.shape[2] == 0:
        out = softmax_attend(local_logits, sees_local, cache.values)
        return out if gates is None else gates[..., :1] * out
    g_pos = cache.global_positions[:, None, :]  # (B, 1, K)
    sees_global = g_pos >= 0  # earlier blocks only, never padding
    global_logits = (q @ cache.global_keys.transpose(-1, -2)) * scale  # (B, H, S, K)
    if gates is None:
        # union: one softmax over window ∪ set, a key counted once (drop set members already local)
        if local == "sliding":
            sees_global = sees_global & (g_pos <= q_pos[None] - window)  # (B, S, K)
        return softmax_attend(
            torch.cat([local_logits, global_logits], dim=-1),
            torch.cat([sees_local, sees_global.expand(-1, q.shape[2], -1)[:, None]], dim=-1),
            torch.cat([cache.values, cache.global_values], dim=2),
        )
    near_out = softmax_attend(local_logits, sees_local, cache.values)
    far_out = softmax_attend(global_logits, sees_global[:, None], cache.global_values)
    return gates[..., :1] * near_out + gates[..., 1:] * far_out


def cached_attention(
    cache: KVCache,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_padding_mask: Tensor | None,
    selection_scores: Tensor | None,
    gates: Tensor | None,
    kind: str,
    window: int,
    local: str,
    global_k: int,
    scale: float,
) -> CachedAttention:
    """Causal attention of T new tokens over the cache, updating it in place.

    New tokens are processed a query block at a time (the global set changes only between blocks):
    append the block's part to the local store, attend, then merge a finished block into the global
    set and drop what no later query can see.

    Args:
        cache: the layer's :class:`KVCache`.
        q, k, v: (B, H, T, D) projections of the new tokens.
        key_padding_mask: bool (B, T), True = real, or None.
        selection_scores: (B, T) float32 ranking scores (-inf at padding) for kind="hybrid", else None.
        gates: (B, H, T, 2) local/global gates for combine="gated", else None (union or full).
        kind, window, local, global_k: the layer's configuration.
        scale: logit scale.

    Returns:
        :class:`CachedAttention`.
    """
    batch, _, total, _ = q.shape
    hybrid = kind != "full"  # "hybrid", or "local" (global_k = 0, no scores)
    if cache.keys is None:
        cache._start(k, global_k, hybrid)
    valid = key_padding_mask if key_padding_mask is not None else torch.ones(
        batch, total, dtype=torch.bool, device=q.device
    )
    outputs, sets = [], []
    start = 0
    while start < total:
        first = cache.length
        stop = min(total, start + window - first % window) if hybrid else total
        part = slice(start, stop)
        part_scores = selection_scores[:, part] if selection_scores is not None else None
        cache._append(k[:, :, part], v[:, :, part], valid[:, part], part_scores)
        outputs.append(
            _attend_segment(
                cache,
                q[:, :, part],
                first,
                gates=gates[:, :, part] if gates is not None else None,
                kind=kind,
                window=window,
                local=local,
                scale=scale,
            )
        )
        if hybrid:
            sets.append(cache.global_positions)
            if cache.length % window == 0:
                if global_k > 0:
                    cache._close_block(window)
                cache._keep_last(0 if local == "block" else window)
            elif local == "sliding":
                cache._keep_last(min(window, cache.keys.shape[2]))
        start = stop
    global_indices = torch.stack(sets, dim=1) if hybrid and global_k > 0 else None
    return CachedAttention(torch.cat(outputs, dim=2), global_indices)
