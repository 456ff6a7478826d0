"""Pure-PyTorch blocked hybrid attention: O(N·(window + K)) time and memory, forward and backward.

Queries are cut into tiles of `tile` positions. A tile's keys are its neighbouring key tiles (the
local window: `left` tiles before, `right` after) followed by the K global keys of its block, so a
tile scores `(left + 1 + right)·tile + K` keys, never N. A chunk of tiles of one sequence at a time
goes through torch's fused `scaled_dot_product_attention` with an additive (tile × keys) mask: the
tiles are batched along SDPA's head axis, so queries and the mask are views (no copies) and only the
chunk's keys are gathered. No score matrix is materialised; on this project's CPU it runs at
~55-60% of plain matmul FLOP/s (benchmarks/README.md).

Backward (`_BlockedAttention`) is activation checkpointing per chunk: only q, k, v and the mask
are kept, each chunk is recomputed and differentiated alone, and its key gradients are added
straight into buffers of the input's size. Memory stays linear in N. Which (query, key) pairs count
is decided by `masks.py`, shared with the FlexAttention backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridformer.attention.masks import (
    MaskSpec,
    canonical_global_sets,
    global_query_rows,
    local_key_range,
    sees_locally,
)

__all__ = ["blocked_attention"]

CHUNK_KEYS = 2048
"""Gathered keys per head per chunk (tiles · keys per tile); bounds the chunk's working memory.
Tuned on the 2-core CPU of benchmarks/README.md: smaller chunks cost more calls, larger ones more
page faults and cache misses."""


@dataclass
class _Plan:
    """Everything about the tiling of one call that does not depend on q, k, v values."""

    n: int
    """Sequence length N."""
    spec: MaskSpec
    """The call's mask: local rule, global indices, padding, scale."""
    tile: int
    """Queries per tile; divides `window`, so a tile lies in one query block."""
    left: int
    """Key tiles before a query tile that its local window may reach."""
    right: int
    """Key tiles after a query tile that its local window may reach."""
    n_tiles: int
    """ceil(N / tile)."""
    key_ok: Tensor
    """Bool (B, (left + n_tiles + right)·tile): padded key position holds a real, non-padding key."""
    sets: Tensor | None
    """Canonical global sets (B, G, K), -1 = empty, each key at most once; None without globals."""

    @property
    def span(self) -> int:
        """Local key slots per query tile."""
        return (self.left + 1 + self.right) * self.tile

    @property
    def n_keys(self) -> int:
        """Key slots per query tile: local span, then the K global slots."""
        return self.span + (0 if self.sets is None else self.sets.shape[2])

    @property
    def chunk(self) -> int:
        """Tiles per chunk."""
        return max(1, CHUNK_KEYS // self.n_keys)

    def tile_set_ids(self, t0: int, t1: int) -> Tensor:
        """Which global set (index into dim 1 of `sets`) each of tiles t0..t1-1 uses: (c,)."""
        tiles = torch.arange(t0, t1, device=self.key_ok.device)
        return tiles * self.tile // self.spec.window if self.sets.shape[1] > 1 else torch.zeros_like(tiles)


def _make_plan(spec: MaskSpec, batch: int, n: int, device: torch.device) -> _Plan:
    window = spec.window
    # Half-window tiles in sliding mode: 1.5·window local slots per query instead of 2·window.
    tile = window // 2 if spec.local == "sliding" and window % 2 == 0 and window >= 64 else window
    # A sequence shorter than a tile lies in one window block: one tile of N is enough.
    tile = min(tile, n)
    n_tiles = math.ceil(n / tile)
    lo, hi = local_key_range(0, tile - 1, **spec.rule())
    # Key tiles further away than the sequence is long hold no keys.
    left = min(math.ceil(max(0, -lo) / tile), n_tiles - 1)
    right = min(math.ceil(max(0, hi - (tile - 1)) / tile), n_tiles - 1)
    real = spec.key_padding_mask
    if real is None:
        real = torch.ones(batch, n, dtype=torch.bool, device=device)
    key_ok = F.pad(real, (left * tile, (n_tiles + right) * tile - n), value=False)
    sets = canonical_global_sets(spec.global_indices, n, window)
    return _Plan(n=n, spec=spec, tile=tile, left=left, right=right, n_tiles=n_tiles, key_ok=key_ok, sets=sets)


def _attention_bias(plan: _Plan, dtype: torch.dtype) -> Tensor:
    """Additive mask (B, n_tiles, tile, n_keys): 0 where query a of tile t sees key slot s, else -inf.

    Local slot s of tile t holds key position (t - left)·tile + s; global slot `span + m` holds key
    `sets[t's set, m]`. A key is visible in one slot at most. O(N·n_keys), built once per call.
    """
    device = plan.key_ok.device
    rule = plan.spec.rule()
    # Tiles align with the window blocks, so the local rule is the same pattern for every tile;
    # evaluate it at tile `left`, the first one whose local slots all have positions >= 0.
    a = plan.left * plan.tile + torch.arange(plan.tile, device=device).view(-1, 1)  # (tile, 1)
    pattern = sees_locally(a, torch.arange(plan.span, device=device), **rule)  # (tile, span)
    real = plan.key_ok.unfold(1, plan.span, plan.tile)  # (B, n_tiles, span): keys of each tile's slots
    visible = pattern & real.unsqueeze(2)  # (B, n_tiles, tile, span)
    if plan.sets is not None:
        i = torch.arange(plan.n_tiles * plan.tile, device=device).view(plan.n_tiles, plan.tile, 1)
        idx = plan.sets[:, plan.tile_set_ids(0, plan.n_tiles)]  # (B, n_tiles, K)
        g = idx.unsqueeze(2)  # (B, n_tiles, 1, K)
        real_g = (idx >= 0) & plan.key_ok.gather(1, idx.clamp(min=0).flatten(1) + plan.left * plan.tile).view_as(idx)
        # A global key the local window already covers is skipped here: each key counts once.
        global_seen = real_g.unsqueeze(2) & ~sees_locally(i, g, **rule)  # (B, n_tiles, tile, K)
        if plan.spec.causal:
            global_seen = global_seen & (g <= i)
        visible = torch.cat([visible, global_seen], dim=-1)
    return torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, float("-inf"))


def _tiles(plan: _Plan, x: Tensor, t0: int, t1: int) -> Tensor:
    """Tiles t0..t1-1 of one sequence x (H, N, D) as (H, t1 - t0, tile, D); zeros outside [0, N).

    A view of x unless the range crosses a sequence end.
    """
    lo, hi = t0 * plan.tile, t1 * plan.tile
    part = x[:, max(lo, 0) : min(hi, plan.n)]
    if lo < 0 or hi > plan.n:
        part = F.pad(part, (0, 0, max(0, -lo), max(0, hi - plan.n)))
    return part.unflatten(1, (t1 - t0, plan.tile))


def _gather_sets(plan: _Plan, x: Tensor) -> Tensor | None:
    """The keys (or values) of every global set: (B, H, G, K, D); empty slots read position 0."""
    if plan.sets is None:
        return None
    batch, heads, _, dim = x.shape
    flat = plan.sets.clamp(min=0).flatten(1)  # (B, G·K)
    out = x.gather(2, flat[:, None, :, None].expand(batch, heads, -1, dim))  # (B, H, G·K, D)
    return out.unflatten(2, plan.sets.shape[1:])


def _chunk_keys(plan: _Plan, x: Tensor, x_sets: Tensor | None, t0: int, t1: int) -> Tensor:
    """Keys (or values) of tiles t0..t1-1 of one sequence: (H, c, n_keys, D), slots as `_attention_bias`.

    Args:
        x: the sequence's keys (H, N, D).
        x_sets: its `_gather_sets` entry (H, G, K, D), or None.
    """
    c = t1 - t0
    src = _tiles(plan, x, t0 - plan.left, t1 + plan.right)  # (H, c + left + right, tile, D)
    parts = [src[:, o : o + c] for o in range(plan.left + 1 + plan.right)]
    if x_sets is not None:
        parts.append(x_sets.expand(-1, c, -1, -1) if x_sets.shape[1] == 1 else x_sets[:, plan.tile_set_ids(t0, t1)])
    return torch.cat(parts, dim=2)


def _attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
    """Fused masked attention (torch's flash kernel on CPU); a query seeing no key gets zeros."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


def _put_rows(plan: _Plan, dst: Tensor, rows: Tensor, t0: int) -> None:
    """Write tile rows (H, c, tile, D) into dst (H, N, D) from position t0·tile, dropping padding."""
    start = t0 * plan.tile
    end = min(start + rows.shape[1] * plan.tile, plan.n)
    dst[:, start:end] = rows.flatten(1, 2)[:, : end - start]


def _vjp(fn, inputs: tuple[Tensor, ...], grad: Tensor) -> tuple[Tensor, ...]:
    """Gradients of `fn` at `inputs` for the output gradient `grad` (a chunk's recomputed backward).

    Under torch.compile through `torch.func.vjp`, which dynamo traces (`torch.autograd.grad` would be a
    graph break); eagerly through `torch.autograd.grad`, which costs less per call (~30% of a small
    layer's backward on this CPU).
    """
    if torch.compiler.is_compiling():
        _, pullback = torch.func.vjp(fn, *inputs)
        return pullback(grad)
    inputs = tuple(x.detach().requires_grad_() for x in inputs)
    with torch.enable_grad():
        return torch.autograd.grad(fn(*inputs), inputs, grad)


def _blocked_forward(q: Tensor, k: Tensor, v: Tensor, plan: _Plan, scale: float, bias: Tensor) -> Tensor:
    """The chunk loop: (B, H, N, D) output of every tile's fused attention over its key slots."""
    out = torch.empty_like(q)
    k_sets, v_sets = _gather_sets(plan, k), _gather_sets(plan, v)
    for b in range(q.shape[0]):
        kb_sets = None if k_sets is None else k_sets[b]
        vb_sets = None if v_sets is None else v_sets[b]
        for t0 in range(0, plan.n_tiles, plan.chunk):
            t1 = min(t0 + plan.chunk, plan.n_tiles)
            rows = _attend(
                _tiles(plan, q[b], t0, t1),  # (H, c, tile, D): tiles ride on SDPA's head axis
                _chunk_keys(plan, k[b], kb_sets, t0, t1),
                _chunk_keys(plan, v[b], vb_sets, t0, t1),
                bias[b, t0:t1].unsqueeze(0),  # (1, c, tile, n_keys), shared by the heads
                scale,
            )
            _put_rows(plan, out[b], rows, t0)
    return out


class _BlockedAttention(torch.autograd.Function):
    """Chunked tile attention whose backward recomputes each chunk (activation checkpointing).

    Only q, k, v and the (N, n_keys) additive mask are kept for backward; a chunk's keys and scores
    exist only while it is processed, and gradients are added straight into buffers of the
    input's size.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, plan: _Plan, scale: float) -> Tensor:
        bias = _attention_bias(plan, q.dtype)
        out = _blocked_forward(q, k, v, plan, scale, bias)
        ctx.save_for_backward(q, k, v, bias)
        ctx.plan, ctx.scale = plan, scale
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, bias = ctx.saved_tensors
        plan, scale = ctx.plan, ctx.scale
        batch, heads, n, dim = q.shape
        # Accumulate in float32 at least: a key's gradient sums contributions of several chunks.
        acc = torch.promote_types(q.dtype, torch.float32)
        padded = (batch, heads, plan.left + plan.n_tiles + plan.right, plan.tile, dim)
        dq = torch.empty_like(q)
        dk_tiles = torch.zeros(padded, dtype=acc, device=q.device)  # key tile u at index u + left
        dv_tiles = torch.zeros(padded, dtype=acc, device=q.device)
        k_sets, v_sets = _gather_sets(plan, k), _gather_sets(plan, v)
        dk_sets = None if k_sets is None else torch.zeros_like(k_sets, dtype=acc)
        dv_sets = None if v_sets is None else torch.zeros_like(v_sets, dtype=acc)
        for b in range(batch):
            kb_sets = None if k_sets is None else k_sets[b]
            vb_sets = None if v_sets is None else v_sets[b]
            for t0 in range(0, plan.n_tiles, plan.chunk):
                t1 = min(t0 + plan.chunk, plan.n_tiles)
                chunk_bias = bias[b, t0:t1].unsqueeze(0)
                dqc, dkc, dvc = _vjp(
                    lambda qc, kc, vc: _attend(qc, kc, vc, chunk_bias, scale),
                    (
                        _tiles(plan, q[b], t0, t1),
                        _chunk_keys(plan, k[b], kb_sets, t0, t1),
                        _chunk_keys(plan, v[b], vb_sets, t0, t1),
                    ),
                    _tiles(plan, grad_out[b], t0, t1),
                )
                _put_rows(plan, dq[b], dqc, t0)
                for grad, d_tiles, d_sets in ((dkc, dk_tiles, dk_sets), (dvc, dv_tiles, dv_sets)):
                    for o in range(plan.left + 1 + plan.right):
                        # Local slot block o of tile t holds key tile t + o - left.
                        d_tiles[b, :, t0 + o : t1 + o] += grad[:, :, o * plan.tile : (o + 1) * plan.tile]
                    if d_sets is not None:
                        glob = grad[:, :, plan.span :]  # (H, c, K, D); empty slots carry zero grad
                        if d_sets.shape[2] == 1:
                            d_sets[b, :, 0] += glob.sum(1)
                        else:
                            d_sets[b].index_add_(1, plan.tile_set_ids(t0, t1), glob.to(acc))
        start = plan.left * plan.tile
        dk = dk_tiles.flatten(2, 3)[:, :, start : start + n]
        dv = dv_tiles.flatten(2, 3)[:, :, start : start + n]
        if plan.sets is not None:
            index = plan.sets.clamp(min=0).flatten(1)[:, None, :, None].expand(batch, heads, -1, dim)
            dk = dk.scatter_add(2, index, dk_sets.flatten(2, 3))
            dv = dv.scatter_add(2, index, dv_sets.flatten(2, 3))
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None


def blocked_attention(q: Tensor, k: Tensor, v: Tensor, spec: MaskSpec) -> Tensor:
    """Hybrid attention with the pure-PyTorch blocked kernel (inputs already validated).

    Args:
        q, k, v: (B, H, N, D), float32 / bfloat16 / float16 / float64.
        spec: the mask (see `hybridformer.attention.hybrid_attention`).

    Returns:
        (B, H, N, D) in q's dtype (low-precision inputs accumulate in float32 inside SDPA).
    """
    batch, _, n, dim = q.shape
    scale = spec.scale_for(dim)
    plan = _make_plan(spec, batch, n, q.device)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        out = _BlockedAttention.apply(q, k, v, plan, scale)
    else:
        # Nothing to differentiate: the loop alone, which torch.compile traces into one graph (the
        # autograd.Function's backward calls torch.autograd.grad, a graph break when compiled).
        out = _blocked_forward(q, k, v, plan, scale, _attention_bias(plan, q.dtype))
    if spec.global_queries_attend_all and plan.sets is not None:
        out = global_query_rows(q, k, v, out, plan.sets, spec)
    return out
