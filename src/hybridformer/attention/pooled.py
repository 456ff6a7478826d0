"""Query-block pooled selection: a far-token selector that learns from the task loss at O(N·N/window).

The straight-through scorer (``scorer.py``) scores tokens without looking at any query, and only the
tokens it happens to pick get a gradient: it does not learn far tokens. NSA's compressed blocks
(``compressed.py``) learn them because their branch attends densely over block summaries, but a
summary dilutes a single salient token, so only small blocks learn, at O(N·N/compress_block).

Here the *keys* stay at token granularity (a salient token is never diluted) and the *queries* are
pooled instead, one per query block of ``window`` tokens and head:

1. Pool: ``P[g, h] = Σ_i a_i q[i, h]`` over block g's real tokens, ``a = softmax_i(w_h · x_i)`` with
   one learned projection of the hidden state per head (``pool_proj``, zero at init: the mean). A
   block holding one token that needs far context (a recall query) learns to put its weight there.
2. Pooled branch: block g's pooled query attends over its *eligible* keys, one softmax per head
   (non-causal: every real key outside block g; causal: the pooled query of block g − 1 over the real
   keys before g·window). Its output is added to every token of block g, scaled per head by a
   sigmoid gate read from the token (``gate_proj``). This branch is dense over the keys, so every key
   — picked or not — gets a gradient from the main loss: no lucky pick is needed.
3. Select: the branch's probabilities summed over the heads give each eligible key its importance for
   block g; the top ``global_k`` (ties: the earlier position) are block g's global set, in position
   order, -1 in empty slots, handed to the hybrid kernel as (B, ceil(N / window), K) indices.
   Selection is hard and takes no gradient; the branch carries it.

Causal: everything block g uses (block g − 1's queries, keys before g·window) lies before g·window,
so no output depends on later tokens, and decoding (``pooled_cache.py``) computes the set and the
branch output once per block.

Cost: the branch and the selection are (ceil(N / window) × N) logits per head: O(N·N/window·D) time.
The branch goes through fused SDPA (no probabilities kept for backward); the selection recomputes
the logits without gradient in chunks that stay in cache, so memory is O(N·D + N·N/window) at most
per chunk, never N×N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.initialization import allocating

__all__ = ["PooledSelection", "PooledOutput", "pool_queries", "eligible_keys", "topk_positions", "select_keys"]

CHUNK_ELEMENTS = 1 << 18
"""Logits (heads × blocks × keys) per selection chunk: ~1 MiB of float32, so a chunk's softmax and
head sum stay in cache."""


@dataclass
class PooledOutput:
    """What :class:`PooledSelection` returns."""

    global_indices: Tensor | None
    """(B, ceil(N / window), K) selected token positions per query block, -1 = empty slot; None for K = 0."""
    output: Tensor
    """(B, H, N, D) the gated pooled branch's output, to be added to the layer's."""


def pool_queries(q: Tensor, pool_logits: Tensor, window: int, key_padding_mask: Tensor | None) -> Tensor:
    """One pooled query per query block and head: softmax(pool_logits) over the block's real tokens.

    Args:
        q: (B, H, N, D) queries.
        pool_logits: (B, N, H) pooling logits (``pool_proj`` of the hidden state).
        window: query block size.
        key_padding_mask: bool (B, N), True = real, or None.

    Returns:
        (B, H, G, D), G = ceil(N / window); zeros for a block with no real token.
    """
    batch, heads, n, dim = q.shape
    groups = math.ceil(n / window)
    extra = groups * window - n
    real = torch.ones(batch, n, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask
    real = F.pad(real, (0, extra)).view(batch, 1, groups, window)  # (B, 1, G, W)
    logits = F.pad(pool_logits.transpose(1, 2), (0, extra)).view(batch, heads, groups, window)  # (B, H, G, W)
    weights = torch.softmax(logits.masked_fill(~real, float("-inf")), dim=-1).nan_to_num(0.0)
    blocks = F.pad(q, (0, 0, 0, extra)).view(batch, heads, groups, window, dim)  # (B, H, G, W, D)
    return (weights.unsqueeze(-2).to(q.dtype) @ blocks).squeeze(-2)  # (B, H, G, D)


def eligible_keys(
    groups: int, n: int, window: int, causal: bool, key_padding_mask: Tensor | None, device: torch.device
) -> Tensor:
    """Which keys block g's pooled branch and selection range over: bool (B or 1, G, N).

    Non-causal: every real key outside block g (its window already holds those). Causal: every real
    key before g·window (block 0: none).
    """
    owner = torch.arange(n, device=device) // window  # (N,) the query block holding key j
    target = torch.arange(groups, device=device)[:, None]  # (G, 1)
    sees = owner[None, :] < target if causal else owner[None, :] != target  # (G, N)
    sees = sees.unsqueeze(0)  # (1, G, N)
    if key_padding_mask is not None:
        sees = sees & key_padding_mask[:, None, :]  # (B, G, N)
    return sees


def topk_positions(importance: Tensor, k: int) -> Tensor:
    """The k largest entries of each row, ties broken by position (the lower first), as positions.

    Two ``topk`` passes instead of a full sort: the k-th value is the threshold; entries above it are
    in, equal ones fill the remaining slots in position order. Entries at -inf are never taken.

    Args:
        importance: (..., N) float, -inf = ineligible.
        k: slots.

    Returns:
        LongTensor (..., k) of positions in increasing order, -1 in empty slots.
    """
    n = importance.shape[-1]
    take = min(k, n)
    kth = importance.topk(take, dim=-1).values[..., -1:]  # (..., 1)
    above = importance > kth
    ties = (importance == kth) & (kth > float("-inf"))
    room = take - above.sum(dim=-1, keepdim=True)
    chosen = above | (ties & (ties.cumsum(dim=-1) <= room))
    # Rank chosen positions first, earlier first: n - j for chosen j, 0 otherwise.
    rank = torch.where(chosen, n - torch.arange(n, device=importance.device), 0)
    values, order = rank.topk(take, dim=-1)  # (..., take) by decreasing rank = increasing position
    positions = order.masked_fill(values == 0, -1)
    if take < k:
        positions = F.pad(positions, (0, k - take), value=-1)
    return positions


def select_keys(pooled: Tensor, k: Tensor, sees: Tensor, scale: float, global_k: int) -> Tensor:
    """Each block's top `global_k` keys by its pooled probabilities summed over the heads.

    Computed without gradient, a chunk of (sequence, blocks) at a time so that the (H, blocks, N)
    logits of a chunk stay in cache.

    Args:
        pooled: (B, H, G, D) the query each block's set is chosen by (causal: already shifted).
        k: (B, H, N, D) keys.
        sees: bool (B or 1, G, N) eligible keys (:func:`eligible_keys`).
        scale: logit scale.
        global_k: K.

    Returns:
        LongTensor (B, G, K), -1 = empty slot.
    """
    batch, heads, groups, _ = pooled.shape
    n = k.shape[2]
    step = max(1, CHUNK_ELEMENTS // (heads * n))
    sets = torch.empty(batch, groups, global_k, dtype=torch.long, device=k.device)
    with torch.no_grad():
        for b in range(batch):
            row = sees[b if sees.shape[0] > 1 else 0]  # (G, N)
            for g0 in range(0, groups, step):
                g1 = min(groups, g0 + step)
                logits = (pooled[b, :, g0:g1] @ k[b].transpose(-1, -2)).float() * scale  # (H, c, N)
                eligible = row[g0:g1]  # (c, N)
                probs = torch.softmax(logits.masked_fill(~eligible, float("-inf")), dim=-1).nan_to_num_(0.0)
                importance = probs.sum(dim=0).masked_fill_(~eligible, float("-inf"))  # (c, N)
                sets[b, g0:g1] = topk_positions(importance, global_k)
    return sets


class PooledSelection(nn.Module):
    """The pooled branch and the pooled-query selection of one layer (see the module docstring).

    Args:
        d_model: hidden size (the pooling weights and the gate read the token).
        n_heads: heads (one pooled query and one gate per head).
        window, global_k, causal: the layer's configuration.

    Submodules: `pool_proj` (d_model -> n_heads, zero at init: mean pooling) and `gate_proj`
    (d_model -> n_heads, the branch's per-head gate logits, nn.Linear's defaults).
    """

    def __init__(self, d_model: int, n_heads: int, *, window: int, global_k: int, causal: bool) -> None:
        super().__init__()
        self.window, self.global_k, self.causal = window, global_k, causal
        with allocating():
            self.pool_proj = nn.Linear(d_model, n_heads)
            self.gate_proj = nn.Linear(d_model, n_heads)
        self.init_weights()

    def init_weights(self) -> None:
        """Pooling at zero (every block's pooled query starts as the mean), the gate nn.Linear's defaults."""
        self.pool_proj.reset_parameters()  # drawn then zeroed: the gate's draw does not depend on it
        with torch.no_grad():
            self.pool_proj.weight.zero_()
            self.pool_proj.bias.zero_()
        self.gate_proj.reset_parameters()

    def pooled_queries(self, hidden_states: Tensor, q: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """(B, H, G, D) the pooled query of every query block (:func:`pool_queries`)."""
        return pool_queries(q, self.pool_proj(hidden_states), self.window, key_padding_mask)

    def gates(self, hidden_states: Tensor) -> Tensor:
        """(B, H, T, 1) the branch's per-head sigmoid gate of every token."""
        batch, n, _ = hidden_states.shape
        return torch.sigmoid(self.gate_proj(hidden_states)).view(batch, n, -1, 1).transpose(1, 2)

    def forward(
        self, hidden_states: Tensor, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, scale: float
    ) -> PooledOutput:
        """Pooled branch and per-block selection.

        Args:
            hidden_states: (B, N, d_model).
            q, k, v: (B, H, N, D) the layer's projections.
            key_padding_mask: bool (B, N), True = real, or None.
            scale: logit scale.

        Returns:
            :class:`PooledOutput`.
        """
        batch, heads, n, dim = q.shape
        pooled = self.pooled_queries(hidden_states, q, key_padding_mask)  # (B, H, G, D)
        groups = pooled.shape[2]
        if self.causal:  # block g is served by block g - 1's pooled query
            pooled = F.pad(pooled, (0, 0, 1, 0))[:, :, :groups]
        sees = eligible_keys(groups, n, self.window, self.causal, key_padding_mask, q.device)  # (B|1, G, N)
        bias = torch.zeros(sees.shape, dtype=q.dtype, device=q.device).masked_fill_(~sees, float("-inf"))
        # Fused attention of G pooled queries over N keys; a block that sees no key gets zeros.
        branch = F.scaled_dot_product_attention(pooled, k, v, attn_mask=bias.unsqueeze(1), scale=scale)  # (B, H, G, D)
        branch = branch * sees.any(dim=-1)[:, None, :, None]
        per_token = branch.repeat_interleave(self.window, dim=2)[:, :, :n]  # (B, H, N, D)
        indices = None
        if self.global_k > 0:
            indices = select_keys(pooled.detach(), k.detach(), sees, scale, self.global_k)
        return PooledOutput(indices, self.gates(hidden_states) * per_token)
