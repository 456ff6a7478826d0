"""Step-by-step causal decoding with selection="pooled", equal to the full causal forward.

A pooled-selection layer may pick any earlier token, so — as with compressed selection and NSA —
decoding keeps every token's key and value (memory O(N), like ``kind="full"``). The set and the
pooled branch's output of a pool block depend only on the previous pool block's queries and the keys
before the block starts, so both are computed once, when a pool block ends: O(N·D) per head once per
``pool_block`` tokens, i.e. O(N / pool_block) amortised per token, plus O(window + K) for the local
window and the set. State (:class:`PooledState`, held in ``KVCache.pooled``):

- keys/values/validity of every token so far;
- the queries minus keys and the pooling logits of the current pool block (pooled when it ends);
- the set in force and the pooled branch's output (per head) for the current pool block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from hybridformer.attention.cache import KVCache, _attend_segment
from hybridformer.attention.pooled import PooledSelection, branch_attention, pool_queries, select_keys

__all__ = ["PooledState", "pooled_cached_attention"]


@dataclass
class PooledState:
    """Decoding state of a pooled-selection layer (see the module docstring)."""

    key_buffer: Tensor
    """(B, H, capacity, D) every token's key so far in its first `length` slots. The capacity doubles
    when full, so appending a token costs O(1) amortised, not a copy of the whole history."""
    value_buffer: Tensor
    """(B, H, capacity, D) their values."""
    valid_buffer: Tensor
    """Bool (B, capacity) real tokens."""
    length: int
    """Tokens held."""
    queries: Tensor
    """(B, H, Q, D) queries minus keys (what is pooled) of the current pool block so far (Q <= pool block)."""
    pool_logits: Tensor
    """(B, Q, H) their pooling logits."""
    global_positions: Tensor
    """(B, K) the set in force for the current pool block, -1 = empty."""
    branch: Tensor
    """(B, H, 1, D) the pooled branch's output (before the gate) for the current pool block."""

    def fork(self) -> PooledState:
        """An independent copy: the buffers, written in place, are copied (their first `length` slots)."""
        return dataclasses.replace(
            self, key_buffer=self.keys.clone(), value_buffer=self.values.clone(), valid_buffer=self.valid.clone()
        )

    @property
    def keys(self) -> Tensor:
        """(B, H, L, D) every token's key so far (a view)."""
        return self.key_buffer[:, :, : self.length]

    @property
    def values(self) -> Tensor:
        """(B, H, L, D) their values (a view)."""
        return self.value_buffer[:, :, : self.length]

    @property
    def valid(self) -> Tensor:
        """Bool (B, L) real tokens (a view)."""
        return self.valid_buffer[:, : self.length]

    def append(self, k: Tensor, v: Tensor, valid: Tensor) -> None:
        """Add T tokens' keys (B, H, T, D), values and validity (B, T), growing the buffers by doubling."""
        end = self.length + k.shape[2]
        if end > self.key_buffer.shape[2]:
            capacity = max(end, 2 * self.key_buffer.shape[2], 64)
            grow = capacity - self.key_buffer.shape[2]
            self.key_buffer = torch.cat([self.key_buffer, self.key_buffer.new_zeros(*k.shape[:2], grow, k.shape[3])], dim=2)
            self.value_buffer = torch.cat([self.value_buffer, self.value_buffer.new_zeros(*v.shape[:2], grow, v.shape[3])], dim=2)
            self.valid_buffer = torch.cat([self.valid_buffer, self.valid_buffer.new_zeros(valid.shape[0], grow)], dim=1)
        self.key_buffer[:, :, self.length : end] = k
        self.value_buffer[:, :, self.length : end] = v
        self.valid_buffer[:, self.length : end] = valid
        self.length = end

    def memory_bytes(self) -> int:
        held = (self.key_buffer, self.value_buffer, self.valid_buffer, self.queries, self.pool_logits,
                self.global_positions, self.branch)
        return sum(t.numel() * t.element_size() for t in held)


def _start(q: Tensor, global_k: int) -> PooledState:
    batch, heads, _, dim = q.shape
    empty = q.new_zeros(batch, heads, 0, dim)
    return PooledState(
        key_buffer=empty, value_buffer=empty, valid_buffer=torch.zeros(batch, 0, dtype=torch.bool, device=q.device),
        length=0, queries=empty, pool_logits=q.new_zeros(batch, 0, heads),
        global_positions=torch.full((batch, global_k), -1, dtype=torch.long, device=q.device),
        branch=q.new_zeros(batch, heads, 1, dim),
    )


def _close_block(state: PooledState, module: PooledSelection, scale: float) -> None:
    """The pool block that just ended chooses the next one's set and pooled-branch output."""
    block_valid = state.valid[:, -state.queries.shape[2]:]
    pooled = pool_queries(state.queries, state.pool_logits, module.block, block_valid)  # (B, H, 1, D)
    visible = state.valid[:, None, :]  # (B, 1, L): every earlier real key
    state.branch, lse = branch_attention(pooled, state.keys, state.values, visible, scale)  # (B, H, 1, D)
    if module.global_k > 0:
        state.global_positions = select_keys(
            pooled, state.keys, visible, scale, module.global_k, window=module.block, block=module.block,
            exclude_own=False, lse=lse, head_sum=module.head_sum,
        )[:, 0]
    state.queries, state.pool_logits = state.queries[:, :, :0], state.pool_logits[:, :0]


def pooled_cached_attention(
    cache: KVCache,
    module: PooledSelection,
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
    """Causal attention of T new tokens over the cache (selection="pooled"), updating it in place.

    Args:
        cache: the layer's :class:`KVCache` (its ``pooled`` field holds the state).
        module: the layer's :class:`PooledSelection`.
        hidden_states: (B, T, d_model) the new tokens (pooling logits and the branch's gate).
        q, k, v: (B, H, T, D) their projections.
        key_padding_mask: bool (B, T) or None.
        gates: (B, H, T, 2) local/global gates for combine="gated", else None.
        local: the local rule; scale: logit scale.

    Returns:
        (output (B, H, T, D) before o_proj, global_indices (B, S, K) the set of each segment's block).
    """
    batch, _, total, _ = q.shape
    window = module.window
    if cache.pooled is None:
        cache.pooled = _start(q, module.global_k)
    state: PooledState = cache.pooled
    valid = key_padding_mask if key_padding_mask is not None else torch.ones(batch, total, dtype=torch.bool, device=q.device)
    branch_gate = module.gates(hidden_states)  # (B, H, T, 1)
    pool_logits = module.pool_proj(hidden_states)  # (B, T, H)
    outputs, sets, start = [], [], 0
    while start < total:
        first = state.length
        if first % module.block == 0 and first > 0:
            _close_block(state, module, scale)
        stop = min(total, start + window - first % window)  # never past a query block's end
        part = slice(start, stop)
        state.append(k[:, :, part], v[:, :, part], valid[:, part])
        state.queries = torch.cat([state.queries, q[:, :, part] - k[:, :, part]], dim=2)
        state.pool_logits = torch.cat([state.pool_logits, pool_logits[:, part]], dim=1)
        length = state.length
        lo = (first // window) * window if local == "block" else max(0, first - window + 1)
        take = state.global_positions.clamp(min=0)[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[3])
        view = KVCache(
            keys=state.keys[:, :, lo:], values=state.values[:, :, lo:], valid=state.valid[:, lo:],
            global_keys=state.keys.gather(2, take), global_values=state.values.gather(2, take),
            global_positions=state.global_positions, length=length,
        )
        seg_gates = gates[:, :, part] if gates is not None else None
        out = _attend_segment(view, q[:, :, part], first, gates=seg_gates, kind="hybrid", window=window, local=local, scale=scale)
        outputs.append(out + branch_gate[:, :, part] * state.branch)
        sets.append(state.global_positions)
        start = stop
    cache.length = state.length
    return torch.cat(outputs, dim=2), torch.stack(sets, dim=1)
