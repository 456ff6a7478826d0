"""Query-block pooled selection: a far-token selector that learns from the task loss at O(N·N/block).

The straight-through scorer (``scorer.py``) scores tokens without looking at any query, and only the
tokens it happens to pick get a gradient: it does not learn far tokens. NSA's compressed blocks
(``compressed.py``) learn them because their branch attends densely over block summaries, but a
summary dilutes a single salient token, so only small blocks learn, at O(N·N/compress_block).

Here the *keys* stay at token granularity (a salient token is never diluted) and the *queries* are
pooled instead, one per pool block of ``block`` tokens (``pool_block``, a multiple of ``window``) and head:

1. Pool: ``P[p, h] = Σ_i a_i (q[i, h] − k[i, h])`` over pool block p's real tokens,
   ``a = softmax_i(w_h · x_i + c_h)`` with one learned projection of the hidden state per head
   (``pool_proj``, zero at init: the mean). A block holding one token that needs far context (a recall
   query) learns to put its weight there. The key term makes a key's logit ``q̄ · k_j − k̄ · k_j``: what
   the block asks for, minus how much key j resembles the block's own keys (relevance minus redundancy,
   as in maximal marginal relevance). The block's window already reads its own kind of token; the
   branch and the set should bring what is new. At initialisation, when ``q̄ · k_j`` is noise, this
   ranks first the keys least like the block's: rare tokens, not more of the common ones, and the
   ranking follows the keys as they train (it is not an initial state that training erases). With the
   mean query alone the branch starts on an arbitrary set, a lone far token's share of the branch is
   ~1/N (a learning signal ~1/√N against the mix of the other keys), and whether training escapes
   that within a few hundred steps was left to the seed (issue 24, recall trained at N = 2,048, 400
   steps: the queried token selected in 65% / 100% / 6% of sequences over seeds 0-2; with the key
   term 99% / 100% / 100%, results/recall_2048_400steps.md).
2. Pooled branch: block p's pooled query attends over its visible keys, one softmax per head
   (non-causal: every real key; causal: the pooled query of block p − 1 over the real keys before
   p·block). Its output is added to every token of block p, scaled per head by a sigmoid gate read
   from the token (``gate_proj``). The branch is dense over the keys, so every key — picked or not —
   gets a gradient from the main loss: no lucky pick is needed.
3. Select: the branch's probabilities summed over the heads rank the keys for block p; each query
   window (``window`` tokens) of block p takes the top ``global_k`` outside its own window (ties: the
   earlier position), in position order, -1 in empty slots: (B, ceil(N / window), K) indices for the
   hybrid kernel. Selection is hard and takes no gradient; the branch carries it.

Causal: everything pool block p uses (block p − 1's queries and keys, keys before p·block) lies before
p·block, so no output depends on later tokens, and decoding (``pooled_cache.py``) computes the set
and the branch output once per pool block.

Cost: the branch and the selection are (ceil(N / block) × N) logits per head: O(N·N/block·D) time,
i.e. N/block key dot-products per token against the window's ``window``. The branch goes through fused
SDPA (nothing N×N kept for backward); the selection recomputes the logits without gradient, a chunk
of blocks at a time that stays in cache, reusing the branch's log-sum-exp on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.initialization import allocating

__all__ = [
    "PooledSelection", "PooledOutput", "pool_queries", "visible_keys", "branch_attention", "select_keys",
    "ranked_positions", "topk_positions", "window_sets",
]

CHUNK_ELEMENTS = 1 << 20
"""Logits (heads × blocks × keys) per selection chunk: ~4 MiB of float32. Each chunk's product re-reads
every key, so fewer, larger chunks win until the chunk leaves the cache: on the 2-core Zen 5, 12 heads,
d=384, one attention layer (inference) took 63 / 124 / 331 ms at N = 4k / 8k / 16k against 68 / 137 /
376 ms with 1 MiB chunks (interleaved, median of 7)."""


@dataclass
class PooledOutput:
    """What :class:`PooledSelection` returns."""

    global_indices: Tensor | None
    """(B, ceil(N / window), K) selected token positions per query window, -1 = empty slot; None for K = 0."""
    output: Tensor
    """(B, H, N, D) the gated pooled branch's output, to be added to the layer's."""


def pool_queries(q: Tensor, pool_logits: Tensor, block: int, key_padding_mask: Tensor | None) -> Tensor:
    """One pooled query per pool block and head: softmax(pool_logits) over the block's real tokens.

    Args:
        q: (B, H, N, D) what is pooled (:class:`PooledSelection` passes queries minus keys).
        pool_logits: (B, N, H) pooling logits (``pool_proj`` of the hidden state).
        block: tokens per pool block.
        key_padding_mask: bool (B, N), True = real, or None.

    Returns:
        (B, H, P, D), P = ceil(N / block); zeros for a block with no real token.
    """
    batch, heads, n, dim = q.shape
    groups = math.ceil(n / block)
    extra = groups * block - n
    real = torch.ones(batch, n, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask
    real = F.pad(real, (0, extra)).view(batch, 1, groups, block)  # (B, 1, P, block)
    logits = F.pad(pool_logits.transpose(1, 2), (0, extra)).view(batch, heads, groups, block)  # (B, H, P, block)
    weights = torch.softmax(logits.masked_fill(~real, float("-inf")), dim=-1).nan_to_num(0.0)
    blocks = F.pad(q, (0, 0, 0, extra)).view(batch, heads, groups, block, dim)  # (B, H, P, block, D)
    return (weights.unsqueeze(-2).to(q.dtype) @ blocks).squeeze(-2)  # (B, H, P, D)


def visible_keys(
    groups: int, n: int, block: int, causal: bool, key_padding_mask: Tensor | None, device: torch.device
) -> Tensor | None:
    """Which keys pool block p's branch attends to: bool (B or 1, P or 1, N), or None for every key.

    Non-causal: every real key (None without padding, else (B, 1, N)). Causal: every real key before
    p·block (block 0: none), (B or 1, P, N).
    """
    if not causal:
        return None if key_padding_mask is None else key_padding_mask[:, None, :]
    owner = torch.arange(n, device=device) // block  # (N,) the pool block holding key j
    sees = (owner[None, :] < torch.arange(groups, device=device)[:, None]).unsqueeze(0)  # (1, P, N)
    return sees if key_padding_mask is None else sees & key_padding_mask[:, None, :]


def ranked_positions(importance: Tensor, eligible: Tensor, k: int) -> Tensor:
    """The k eligible entries of each row with the largest importance, ties to the lower position, in
    that rank order; -1 in empty slots (fewer than k eligible), which come last.

    One ``topk`` over int64 keys that order by (importance desc, position asc): the float32 bits of a
    non-negative float ordered as integers (monotone), times 2^32, plus 2^32 - 1 - position; ineligible
    entries get -1. Unique keys make the set deterministic without a sort of the whole row.

    Args:
        importance: (..., N) float >= 0 (rounded to float32 for ranking).
        eligible: bool, broadcastable to `importance`.
        k: slots.

    Returns:
        LongTensor (..., k).
    """
    n = importance.shape[-1]
    take = min(k, n)
    bits = importance.float().view(torch.int32).long()  # order-preserving for x >= 0
    low = (1 << 32) - 1 - torch.arange(n, device=importance.device)
    keys = torch.where(eligible, (bits << 32) + low, -1)  # (..., N)
    best = keys.topk(take, dim=-1).values  # (..., take)
    positions = torch.where(best >= 0, (1 << 32) - 1 - (best & ((1 << 32) - 1)), -1)
    return F.pad(positions, (0, k - take), value=-1)


def ascending(positions: Tensor) -> Tensor:
    """Positions (-1 = empty) in increasing order, the empty slots last."""
    top = torch.iinfo(positions.dtype).max
    ordered = positions.masked_fill(positions < 0, top).sort(dim=-1).values
    return ordered.masked_fill(ordered == top, -1)


def topk_positions(importance: Tensor, eligible: Tensor, k: int) -> Tensor:
    """:func:`ranked_positions` listed in increasing position order (empty slots -1 last)."""
    return ascending(ranked_positions(importance, eligible, k))


def window_sets(candidates: Tensor, first_window: Tensor, per_block: int, window: int, k: int) -> Tensor:
    """Each query window's set from its pool block's ranked candidates, its own window's keys left out.

    Args:
        candidates: (c, k + window) ranked positions of c pool blocks (:func:`ranked_positions`).
        first_window: (c,) index of each pool block's first query window.
        per_block: query windows per pool block r.
        window, k: the layer's window and K.

    Returns:
        (c, r, k) the first k candidates outside each window, in increasing position order.
    """
    slots = candidates.shape[-1]
    own = first_window[:, None] + torch.arange(per_block, device=candidates.device)  # (c, r)
    drop = (candidates[:, None, :] < 0) | (candidates[:, None, :] // window == own[..., None])  # (c, r, slots)
    rank = torch.arange(slots, device=candidates.device).masked_fill(drop, slots)  # dropped rank last
    order = rank.topk(k, dim=-1, largest=False).indices  # (c, r, k) the k best kept, by rank
    chosen = candidates[:, None, :].expand(-1, per_block, -1).gather(-1, order)
    return ascending(chosen.masked_fill(drop.gather(-1, order), -1))


def select_keys(
    pooled: Tensor,
    k: Tensor,
    visible: Tensor | None,
    scale: float,
    global_k: int,
    *,
    window: int,
    block: int,
    exclude_own: bool,
    lse: Tensor | None = None,
    pinned: int = 0,
    head_sum: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Each query window's top `global_k` keys by its pool block's branch probabilities summed over the
    heads (non-causal: its own window's keys left out; causal: the branch's keys all lie before the
    pool block, so its windows share one set).

    Computed without gradient, a chunk of (sequence, pool blocks) at a time so that the chunk's
    (H, blocks, N) logits stay in cache.

    Args:
        pooled: (B, H, P, D) the query each pool block's set is chosen by (causal: already shifted).
        k: (B, H, N, D) keys.
        visible: bool (B or 1, P or 1, N) the branch's keys (:func:`visible_keys`), None = every key.
        scale: logit scale.
        global_k: K.
        window: query window size; block: pool block size (a multiple of window).
        exclude_own: leave out the keys of each query window (non-causal).
        lse: (B, H, P) the branch's log-sum-exp per pooled query (from the fused kernel), or None.
        pinned: positions below this are never picked (the layer adds them to every set itself).
        head_sum: adds the importance of heads held elsewhere to this one's (in place or not) and returns
            the total, when the layer holds a shard of the heads (:attr:`PooledSelection.head_sum`).

    Returns:
        LongTensor (B, ceil(N / window), K), -1 = empty slot.
    """
    batch, heads, groups, _ = pooled.shape
    n = k.shape[2]
    per_block = block // window
    step = max(1, CHUNK_ELEMENTS // (heads * n))
    if visible is None:
        visible = torch.ones(1, 1, n, dtype=torch.bool, device=k.device)
    pickable = torch.arange(n, device=k.device) >= pinned  # (N,)
    sets = []
    pooled = pooled * scale  # (B, H, P, D): scaling the few pooled queries, not the (P × N) logits
    with torch.no_grad():
        for b in range(batch):
            row = visible[b if visible.shape[0] > 1 else 0]  # (P or 1, N)
            for g0 in range(0, groups, step):
                g1 = min(groups, g0 + step)
                sees = row[g0:g1] if row.shape[0] > 1 else row  # (c or 1, N)
                logits = pooled[b, :, g0:g1] @ k[b].transpose(-1, -2)  # (H, c, N) scaled logits
                logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
                if lse is None:
                    norm = torch.logsumexp(logits.masked_fill(~sees, float("-inf")), dim=-1, keepdim=True)
                else:
                    norm = lse[b, :, g0:g1, None].to(logits.dtype)
                importance = torch.exp(logits - norm).sum(dim=0)  # (c, N)
                if head_sum is not None:
                    importance = head_sum(importance)
                if exclude_own:
                    candidates = ranked_positions(importance, sees & pickable, global_k + window)  # (c, K + window)
                    first = torch.arange(g0, g1, device=k.device) * per_block
                    sets.append(window_sets(candidates, first, per_block, window, global_k))
                else:
                    chosen = topk_positions(importance, sees & pickable, global_k)  # (c, K)
                    sets.append(chosen[:, None, :].expand(-1, per_block, -1))
    windows = math.ceil(n / window)
    return torch.cat(sets, dim=0).view(batch, groups * per_block, global_k)[:, :windows]


def branch_attention(
    pooled: Tensor, k: Tensor, v: Tensor, visible: Tensor | None, scale: float
) -> tuple[Tensor, Tensor | None]:
    """The pooled queries' fused attention over their visible keys (None = every key, no mask at all).

    Returns:
        (output (B, H, P, D), log-sum-exp (B, H, P) on CPU, where torch's flash kernel returns it,
        else None). A query seeing no key gets zeros.
    """
    bias = None
    if visible is not None:
        bias = torch.zeros(visible.shape, dtype=pooled.dtype, device=pooled.device).masked_fill_(~visible, float("-inf"))
        bias = bias.unsqueeze(1)  # (B or 1, 1, P or 1, N)
    if pooled.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(pooled, k, v, attn_mask=bias, scale=scale)
    else:
        out, lse = F.scaled_dot_product_attention(pooled, k, v, attn_mask=bias, scale=scale), None
    if visible is not None:
        out = out * visible.any(dim=-1)[:, None, :, None]
    return out, lse


class PooledSelection(nn.Module):
    """The pooled branch and the pooled-query selection of one layer (see the module docstring).

    Args:
        d_model: hidden size (the pooling weights and the gate read the token).
        n_heads: heads (one pooled query and one gate per head).
        window, global_k, causal: the layer's configuration.
        block: tokens per pool block (``pool_block``), a multiple of window.
        pinned: the first `pinned` positions are in every window's set (``pinned_global``; non-causal),
            the selection picking the other global_k − pinned.

    Submodules: `pool_proj` (d_model -> n_heads, zero at init: mean pooling) and `gate_proj`
    (d_model -> n_heads, the branch's per-head gate logits, nn.Linear's defaults).
    """

    def __init__(self, d_model: int, n_heads: int, *, window: int, block: int, global_k: int, causal: bool,
                 pinned: int = 0) -> None:
        super().__init__()
        if pinned and (causal or pinned > global_k):
            raise ValueError(f"pinned: needs causal=False and pinned <= global_k={global_k}, got {pinned}")
        self.window, self.block, self.global_k, self.causal, self.pinned = window, block, global_k, causal, pinned
        self.head_sum: Callable[[Tensor], Tensor] | None = None
        """Sums the keys' importance over heads this layer does not hold (set from outside when the
        heads are sharded, e.g. a tensor-parallel all-reduce, so every shard picks the same sets);
        None: every head is here."""
        with allocating():
            self.pool_proj = nn.Linear(d_model, n_heads)
            self.gate_proj = nn.Linear(d_model, n_heads)
        self.init_weights()

    def init_weights(self) -> None:
        """Pooling at zero (every block's pooled query starts as the mean), the gate nn.Linear's defaults.
        The pooling layer is drawn before it is zeroed, so the gate's draw follows the same random stream
        as in the runs of results/recall.md."""
        self.pool_proj.reset_parameters()
        with torch.no_grad():
            self.pool_proj.weight.zero_()
            self.pool_proj.bias.zero_()
        self.gate_proj.reset_parameters()

    CLOSED_GATE_BIAS = -6.0
    """The gate logit :meth:`start_closed` sets: sigmoid(-6) = 0.0025."""

    @torch.no_grad()
    def start_closed(self) -> None:
        """Start the branch nearly closed (gate weights 0, bias :attr:`CLOSED_GATE_BIAS`), for a branch
        added to a trained model: it then leaves the model's function almost unchanged (MiniLM: the
        last hidden state moves 0.35 of its norm with the default gate, under 0.01 closed). The selection
        still learns at Adam's pace, its gradient scaled by the gate's constant, and the gate opens
        where the branch helps."""
        self.gate_proj.weight.zero_()
        self.gate_proj.bias.fill_(self.CLOSED_GATE_BIAS)

    def pooled_queries(self, hidden_states: Tensor, q: Tensor, k: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """(B, H, P, D) the pooled query of every pool block (:func:`pool_queries` of q − k)."""
        return pool_queries(q - k, self.pool_proj(hidden_states), self.block, key_padding_mask)

    def gates(self, hidden_states: Tensor) -> Tensor:
        """(B, H, T, 1) the branch's per-head sigmoid gate of every token."""
        batch, n, _ = hidden_states.shape
        return torch.sigmoid(self.gate_proj(hidden_states)).view(batch, n, -1, 1).transpose(1, 2)

    def pinned_positions(self, batch: int, n: int, key_padding_mask: Tensor | None, device: torch.device) -> Tensor:
        """(B, pinned) the pinned positions 0 .. pinned − 1, -1 where a position is padding or >= N."""
        pinned = torch.arange(self.pinned, device=device).expand(batch, -1)  # (B, pinned)
        absent = pinned >= n
        if key_padding_mask is not None:
            real = F.pad(key_padding_mask[:, : self.pinned], (0, max(0, self.pinned - n)))  # (B, pinned)
            absent = absent | ~real
        return pinned.masked_fill(absent, -1)

    def with_pinned(self, picked: Tensor | None, batch: int, n: int, key_padding_mask: Tensor | None,
                    device: torch.device) -> Tensor:
        """(B, ceil(N / window), K): the pinned positions, then each window's picks (None: no picks).
        A pinned key inside a window's own span is seen there once (the kernel skips a global key its
        window covers)."""
        windows = math.ceil(n / self.window)
        pinned = self.pinned_positions(batch, n, key_padding_mask, device)[:, None, :].expand(-1, windows, -1)  # (B, W, p)
        return pinned if picked is None else torch.cat([pinned, picked], dim=-1)

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
        pooled = self.pooled_queries(hidden_states, q, k, key_padding_mask)  # (B, H, P, D)
        groups = pooled.shape[2]
        if self.causal:  # pool block p is served by block p - 1's pooled query
            pooled = F.pad(pooled, (0, 0, 1, 0))[:, :, :groups]
        visible = visible_keys(groups, n, self.block, self.causal, key_padding_mask, q.device)  # (B|1, P|1, N)
        branch, lse = branch_attention(pooled, k, v, visible, scale)  # (B, H, P, D)
        indices = None
        if self.global_k > self.pinned:
            indices = select_keys(
                pooled.detach(), k.detach(), visible, scale, self.global_k - self.pinned, window=self.window,
                block=self.block, exclude_own=not self.causal, lse=None if lse is None else lse.detach(),
                pinned=self.pinned, head_sum=self.head_sum,
            )
        if self.pinned:
            indices = self.with_pinned(indices, batch, n, key_padding_mask, q.device)
        # Every token of pool block p gets its gate times block p's output, by broadcasting (no copy).
        gates = F.pad(self.gates(hidden_states), (0, 0, 0, groups * self.block - n))  # (B, H, P·block, 1)
        per_token = gates.view(batch, heads, groups, self.block, 1) * branch.unsqueeze(3)  # (B, H, P, block, D)
        return PooledOutput(indices, per_token.view(batch, heads, groups * self.block, dim)[:, :, :n])
