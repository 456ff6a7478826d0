"""Step-by-step causal decoding with selection="compressed", equal to the full causal forward.

A compressed-selection layer may pick any earlier block, so — as in NSA — decoding keeps every
token's key and value (memory O(N), like ``kind="full"``). Per token the work stays
O(window + K + N / compress_block): the local window, the block's selected set (fixed for the whole
query block) and the block summaries. State (:class:`CompressedState`, held in ``KVCache.compressed``):

- keys/values/validity of every token so far;
- the block summaries of every finished compress block (pooled once, when the block ends);
- the queries of the current query block, which choose the next block's set when it ends
  (block b's set = top blocks by block b−1's combined compressed probabilities, as in
  :func:`~hybridformer.attention.compressed.block_importance`);
- the set in force and its keys/values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hybridformer.attention.cache import KVCache, _attend_segment
from hybridformer.attention.compressed import CompressedSelection, blocks_to_tokens, combine_votes, compress_blocks
from hybridformer.attention.selected import softmax_attend

__all__ = ["CompressedState", "compressed_cached_attention"]


@dataclass
class CompressedState:
    """Decoding state of a compressed-selection layer (see the module docstring)."""

    keys: Tensor
    """(B, H, L, D) every token's key so far."""
    values: Tensor
    """(B, H, L, D) their values."""
    valid: Tensor
    """Bool (B, L) real tokens."""
    summary_keys: Tensor
    """(B, H, C, D) pooled keys of the C finished compress blocks."""
    summary_values: Tensor
    """(B, H, C, D) pooled values."""
    summary_real: Tensor
    """Bool (B, C) the block holds a real token."""
    queries: Tensor
    """(B, H, Q, D) queries of the current query block so far (Q <= window)."""
    global_positions: Tensor
    """(B, K) the set in force for the current query block, -1 = empty."""

    def memory_bytes(self) -> int:
        held = (self.keys, self.values, self.valid, self.summary_keys, self.summary_values, self.summary_real,
                self.queries, self.global_positions)
        return sum(t.numel() * t.element_size() for t in held)


def _start(q: Tensor, global_k: int) -> CompressedState:
    batch, heads, _, dim = q.shape
    empty = q.new_zeros(batch, heads, 0, dim)
    return CompressedState(
        keys=empty, values=empty, valid=torch.zeros(batch, 0, dtype=torch.bool, device=q.device),
        summary_keys=empty, summary_values=empty, summary_real=torch.zeros(batch, 0, dtype=torch.bool, device=q.device),
        queries=empty, global_positions=torch.full((batch, global_k), -1, dtype=torch.long, device=q.device),
    )


def _next_set(state: CompressedState, module: CompressedSelection, scale: float) -> Tensor:
    """The next query block's set, chosen by the stored queries of the block that just ended."""
    logits = ((state.queries @ state.summary_keys.transpose(-1, -2)) * scale).float()  # (B, H, window, C)
    sees = state.summary_real[:, None, None, :]
    probs = torch.softmax(logits.masked_fill(~sees, float("-inf")), dim=-1).nan_to_num(0.0)
    votes = state.valid[:, -state.queries.shape[2]:].float()[:, None, :, None]  # (B, 1, window, 1)
    importance = combine_votes(probs * votes, module.vote, query_dim=2).masked_fill(~state.summary_real, float("-inf"))  # (B, C)
    n = state.keys.shape[2]
    return blocks_to_tokens(importance[:, None], module.global_k // module.block, module.block, n, state.valid)[:, 0]


def compressed_cached_attention(
    cache: KVCache,
    module: CompressedSelection,
    hidden_states: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_padding_mask: Tensor | None,
    gates: Tensor | None,
    local: str,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """Causal attention of T new tokens over the cache (selection="compressed"), updating it in place.

    Args:
        cache: the layer's :class:`KVCache` (its ``compressed`` field holds the state).
        module: the layer's :class:`CompressedSelection`.
        hidden_states: (B, T, d_model) the new tokens (for the compressed branch's gate).
        q, k, v: (B, H, T, D) their projections.
        key_padding_mask: bool (B, T) or None.
        gates: (B, H, T, 2) local/global gates for combine="gated", else None.
        local: the local rule; scale: logit scale.

    Returns:
        (output (B, H, T, D) before o_proj, global_indices (B, S, K) the set of each segment's block).
    """
    batch, _, total, _ = q.shape
    window, block = module.window, module.block
    if cache.compressed is None:
        cache.compressed = _start(q, module.global_k)
    state: CompressedState = cache.compressed
    valid = key_padding_mask if key_padding_mask is not None else torch.ones(batch, total, dtype=torch.bool, device=q.device)
    branch_gate = torch.sigmoid(module.gate_proj(hidden_states)).view(batch, total, -1, 1).transpose(1, 2)
    outputs, sets, start = [], [], 0
    while start < total:
        first = state.keys.shape[2]
        if first % window == 0 and first > 0:  # a query block ended: choose the next one's set
            state.global_positions = _next_set(state, module, scale)
            state.queries = state.queries[:, :, :0]
        stop = min(total, start + block - first % block)  # never past a compress block's end
        part = slice(start, stop)
        state.keys = torch.cat([state.keys, k[:, :, part]], dim=2)
        state.values = torch.cat([state.values, v[:, :, part]], dim=2)
        state.valid = torch.cat([state.valid, valid[:, part]], dim=1)
        state.queries = torch.cat([state.queries, q[:, :, part]], dim=2)
        length = state.keys.shape[2]
        if length % block == 0:  # a compress block ended: pool it once
            k_c, v_c, real = compress_blocks(
                state.keys[:, :, -block:], state.values[:, :, -block:], block, state.valid[:, -block:], module.pool,
                module.summary,
            )
            state.summary_keys = torch.cat([state.summary_keys, k_c], dim=2)
            state.summary_values = torch.cat([state.summary_values, v_c], dim=2)
            state.summary_real = torch.cat([state.summary_real, real], dim=1)
        lo = (first // window) * window if local == "block" else max(0, first - window + 1)
        take = state.global_positions.clamp(min=0)[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[3])
        view = KVCache(
            keys=state.keys[:, :, lo:], values=state.values[:, :, lo:], valid=state.valid[:, lo:],
            global_keys=state.keys.gather(2, take), global_values=state.values.gather(2, take),
            global_positions=state.global_positions, length=length,
        )
        seg_gates = gates[:, :, part] if gates is not None else None
        out = _attend_segment(view, q[:, :, part], first, gates=seg_gates, kind="hybrid", window=window, local=local, scale=scale)
        # The compressed branch: query i sees the summaries of blocks that ended at or before i.
        q_pos = torch.arange(first, length, device=q.device)[:, None]  # (S, 1)
        ends = (torch.arange(state.summary_keys.shape[2], device=q.device) + 1) * block - 1  # (C,)
        sees = state.summary_real[:, None, None, :] & (ends[None, :] <= q_pos)[None, None]  # (B, 1, S, C)
        logits = (q[:, :, part] @ state.summary_keys.transpose(-1, -2)) * scale  # (B, H, S, C)
        out = out + branch_gate[:, :, part] * softmax_attend(logits, sees, state.summary_values)
        outputs.append(out)
        sets.append(state.global_positions)
        start = stop
    cache.length = state.keys.shape[2]
    return torch.cat(outputs, dim=2), torch.stack(sets, dim=1)
