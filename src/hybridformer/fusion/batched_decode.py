"""One decode step for a whole batch of sequences, each at its own position, over fixed-size KV buffers.

The per-sequence :class:`~hybridformer.attention.KVCache` grows and shrinks by concatenation and its
attention runs one sequence at a time; at a small width that makes a decode step a few hundred tiny
ops and their Python. Here the self-attention state of one layer for B sequences is one preallocated
buffer (:class:`RingCache`), and every op of a step runs once for the whole batch:

- keys and values (B, 2, H, W + K, D): slots [0, W) are a ring of the local tokens (position p in slot
  ``p % W``), slots [W, W + K) the global set in force; the new token's k/v are written in place
  (one ``index_put`` per layer), nothing is concatenated or re-allocated;
- ``positions`` (B, W) of the ring slots (-1 = empty or padding), shared by every layer (the tokens
  are the same), and per layer ``global_positions`` (B, K), ``scores`` (B, W), ``global_scores`` (B, K);
- the query attends with one fused SDPA over the W + K slots with a (B, W + K) visibility mask; a
  block that ends is merged into the global set with the same ``merge_topk`` the full forward and
  ``KVCache`` use (only for the rows whose block ended, known on the host from their lengths), so the
  same tokens are selected and the outputs match the per-sequence cache;
- q/k/v (and a linear scorer) are one fused projection, whose weights are concatenated once per batch.

Nothing in a step reads a tensor value on the host. Supported: ``kind="hybrid"`` with the learned
scorer (union or gated combine, block or sliding local) and ``kind="local"``; other layers
(``kind="full"``, ``selection="compressed"``) keep the per-sequence cache (:func:`ring_supported`).
:func:`pack` builds the buffers from prefilled per-sequence caches, :func:`unpack` gives one back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridformer.attention import AttentionConfig, HybridAttention, KVCache
from hybridformer.attention.scorer import merge_topk
from hybridformer.attention.selected import softmax_attend

__all__ = [
    "RingCache", "StepLayout", "FusedProjection", "ring_supported", "pack", "unpack", "ring_attention",
    "linear_of", "layer_norm_of",
]


def linear_of(layer: torch.nn.Module, x: Tensor) -> Tensor:
    """``layer(x)``, without the module call for a float Linear (its Python costs as much as a d=128
    matmul); any other layer (an int8 one of :mod:`hybridformer.compression`, which holds no float weight
    tensor) is called."""
    weight = getattr(layer, "weight", None)
    if type(layer) is torch.nn.Linear and isinstance(weight, Tensor):
        return F.linear(x, weight, layer.bias)
    return layer(x)


def layer_norm_of(norm: torch.nn.LayerNorm, x: Tensor) -> Tensor:
    """``norm(x)`` without the module call."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def ring_supported(config: AttentionConfig) -> bool:
    """Whether layers of this config decode over :class:`RingCache` buffers."""
    return config.kind == "local" or (config.kind == "hybrid" and config.selection == "scorer")


@dataclass
class RingCache:
    """Self-attention state of one layer for B sequences (see the module docstring)."""

    kv: Tensor
    """(B, 2, H, W + K, D): keys [:, 0] and values [:, 1]; slots [0, W) the ring, [W, W + K) the global set."""
    scores: Tensor | None
    """(B, W) float32 selection scores of the ring slots (-inf = empty/padding); None without a global set."""
    global_scores: Tensor | None
    """(B, K) float32 scores of the global set, -inf in empty slots."""
    global_positions: Tensor | None
    """(B, K) positions of the global set, -1 in empty slots."""

    def select(self, index: Tensor) -> RingCache:
        """Rows ``index`` (a repeated row is copied: forks are independent)."""
        pick = (lambda t: None if t is None else t.index_select(0, index))
        return RingCache(pick(self.kv), pick(self.scores), pick(self.global_scores), pick(self.global_positions))

    @staticmethod
    def cat(parts: Sequence[RingCache]) -> RingCache:
        """The rows of ``parts`` in turn."""
        join = (lambda name: None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts]))
        return RingCache(join("kv"), join("scores"), join("global_scores"), join("global_positions"))


@dataclass
class StepLayout:
    """What every layer of one step shares: the new tokens' positions and the ring's visibility."""

    rows: Tensor
    """(B,) 0..B-1."""
    positions: Tensor
    """(B,) position of each sequence's new token."""
    slots: Tensor
    """(B,) ring slot of the new token (position % W)."""
    ring_positions: Tensor
    """(B, W) position in each ring slot after this step's write, -1 = empty/padding."""
    local_sees: Tensor
    """(B, W) bool: the new token sees that ring slot (same block, or within the sliding window)."""
    closing: Tensor | None
    """Rows whose block ends with this token (their block is merged into the global set), or None."""


def _float_linear(layer: torch.nn.Module) -> bool:
    """A Linear whose weight is a plain float tensor (not an int8 layer or a tensor subclass)."""
    weight = getattr(layer, "weight", None)
    return type(layer) is torch.nn.Linear and type(weight) in (Tensor, torch.nn.Parameter) and weight.is_floating_point()


class FusedProjection:
    """q, k, v (and a linear scorer's raw score) of a layer as one matmul; weights concatenated once.

    Layers that are not float Linears (int8 ones, see :mod:`hybridformer.compression`) are not
    concatenated: q/k/v (or the layer's fused ``qkv_proj``) then run as their own layers and the
    outputs are joined in the same layout, with the scorer's score (a float layer, never quantized)
    fused only among float layers.
    """

    def __init__(self, layer: HybridAttention) -> None:
        fused = getattr(layer, "qkv_proj", None)  # q/k/v already one layer (an int8 deploy transform)
        parts = [fused] if fused is not None else [layer.q_proj, layer.k_proj, layer.v_proj]
        scorer = getattr(layer, "scorer", None)
        self.fused_score = scorer is not None and isinstance(scorer.net, torch.nn.Linear)
        if self.fused_score:
            parts.append(scorer.net)
        self.parts: list[torch.nn.Module] | None = None
        if not all(_float_linear(p) for p in parts):
            self.parts = parts
            return
        self.weight = torch.cat([p.weight for p in parts]).detach()  # (3d [+1], d)
        biases = [p.bias if p.bias is not None else p.weight.new_zeros(p.out_features) for p in parts]
        self.bias = torch.cat(biases).detach() if any(p.bias is not None for p in parts) else None

    def __call__(self, h: Tensor) -> Tensor:
        if self.parts is not None:
            return torch.cat([linear_of(p, h) for p in self.parts], dim=-1)  # (B, 3d [+1])
        return F.linear(h, self.weight, self.bias)


def pack(caches: Sequence[KVCache], lengths: Sequence[int], config: AttentionConfig, like: Tensor) -> tuple[RingCache, Tensor]:
    """Per-sequence caches of one layer (prefilled) -> (:class:`RingCache`, ring positions (B, W)).

    Args:
        caches: one :class:`KVCache` per sequence, filled by a prefill of ``lengths[i]`` tokens.
        lengths: tokens each cache has seen.
        config: the layer's attention config.
        like: a tensor with the dtype and device of the keys.
    """
    window, global_k = config.window, (config.global_k if config.kind == "hybrid" else 0)
    heads, dim = config.n_heads, config.head_dim
    batch = len(caches)
    kv = like.new_zeros(batch, 2, heads, window + global_k, dim)
    positions = torch.full((batch, window), -1, dtype=torch.long, device=like.device)
    scored = config.kind == "hybrid" and global_k > 0
    scores = torch.full((batch, window), float("-inf"), device=like.device) if scored else None
    g_scores = torch.full((batch, global_k), float("-inf"), device=like.device) if scored else None
    g_pos = torch.full((batch, global_k), -1, dtype=torch.long, device=like.device) if scored else None
    for i, (cache, length) in enumerate(zip(caches, lengths)):
        if cache.length != length:
            raise ValueError(f"caches: sequence {i} has a cache of {cache.length} tokens, expected {length}")
        if cache.keys is None:
            continue
        n_local = cache.keys.shape[2]
        held = torch.arange(length - n_local, length, device=like.device)  # positions of the local tokens
        slots = held % window
        kv[i, 0].index_copy_(1, slots, cache.keys[0])  # (H, W + K, D) <- (H, L, D)
        kv[i, 1].index_copy_(1, slots, cache.values[0])
        positions[i].index_copy_(0, slots, held.masked_fill(~cache.valid[0], -1))
        if scored:
            scores[i].index_copy_(0, slots, cache.scores[0])
            kv[i, 0, :, window:], kv[i, 1, :, window:] = cache.global_keys[0], cache.global_values[0]
            g_scores[i], g_pos[i] = cache.global_scores[0], cache.global_positions[0]
    return RingCache(kv, scores, g_scores, g_pos), positions


def unpack(ring: RingCache, ring_positions: Tensor, row: int, length: int, config: AttentionConfig) -> KVCache:
    """Row ``row`` as a per-sequence :class:`KVCache` of ``length`` tokens (fresh tensors)."""
    window = config.window
    n_local = length % window if config.local == "block" else min(window, length)
    held = torch.arange(length - n_local, length, device=ring.kv.device)
    slots = held % window  # (L,) in position order
    cache = KVCache(
        keys=ring.kv[row, 0].index_select(1, slots)[None], values=ring.kv[row, 1].index_select(1, slots)[None],
        valid=(ring_positions[row].index_select(0, slots) >= 0)[None], length=length,
    )  # keys/values (1, H, L, D)
    if ring.scores is not None:
        k = ring.global_scores.shape[1]
        cache.scores = ring.scores[row].index_select(0, slots)[None]
        cache.global_keys = ring.kv[row : row + 1, 0, :, window : window + k].clone()
        cache.global_values = ring.kv[row : row + 1, 1, :, window : window + k].clone()
        cache.global_scores = ring.global_scores[row : row + 1].clone()
        cache.global_positions = ring.global_positions[row : row + 1].clone()
    elif config.kind == "hybrid":  # hybrid with global_k = 0: KVCache keeps empty scores and sets
        cache.scores = torch.zeros(1, n_local, device=ring.kv.device)
        cache.global_keys = ring.kv.new_zeros(1, config.n_heads, 0, config.head_dim)
        cache.global_values = ring.kv.new_zeros(1, config.n_heads, 0, config.head_dim)
        cache.global_scores = torch.zeros(1, 0, device=ring.kv.device)
        cache.global_positions = torch.zeros(1, 0, dtype=torch.long, device=ring.kv.device)
    return cache


def ring_attention(layer: HybridAttention, proj: FusedProjection, h: Tensor, ring: RingCache, step: StepLayout) -> Tensor:
    """Self-attention of one new token per sequence over its ring, updating the ring in place.

    Args:
        layer: the block's :class:`HybridAttention` (its o_proj, scorer, gate_proj and config are used).
        proj: the layer's :class:`FusedProjection`.
        h: (B, d_model) normalised hidden states of the new tokens (2-D: one token per sequence).
        ring: this layer's :class:`RingCache`.
        step: the step's :class:`StepLayout`.

    Returns:
        (B, d_model) the attention output (after o_proj).
    """
    cfg = layer.config
    batch, d, heads, window = h.shape[0], cfg.d_model, cfg.n_heads, cfg.window
    y = proj(h)  # (B, 3d [+1])
    q = y[:, :d].view(batch, heads, 1, -1)  # (B, H, 1, D): one query per sequence, no transpose
    new_kv = y[:, d : 3 * d].view(batch, 2, heads, -1)  # (B, 2, H, D)
    ring.kv[step.rows, :, :, step.slots] = new_kv
    keys, values = ring.kv[:, 0], ring.kv[:, 1]  # (B, H, W + K, D)
    scored = ring.scores is not None
    if scored:
        raw = y[:, 3 * d] if proj.fused_score else layer.scorer.net(h)[:, 0]  # (B,)
        cap = layer.scorer.cap
        score = (raw if cap == 0 else cap * torch.tanh(raw / cap)).float()  # (B,) = selection_scores, eval
        ring.scores[step.rows, step.slots] = score
    gated = cfg.kind == "hybrid" and cfg.combine == "gated"
    if not scored:
        sees = step.local_sees[:, None, None, :]  # (B, 1, 1, W)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=sees, scale=layer.scale)
        if gated:
            out = layer._gates(h[:, None])[..., :1] * out
    else:
        g_pos = ring.global_positions  # (B, K)
        if gated:
            gates = layer._gates(h[:, None])  # (B, H, 1, 2)
            near = F.scaled_dot_product_attention(q, keys[:, :, :window], values[:, :, :window],
                                                  attn_mask=step.local_sees[:, None, None, :], scale=layer.scale)
            logits = (q @ keys[:, :, window:].transpose(-1, -2)) * layer.scale  # (B, H, 1, K)
            far = softmax_attend(logits, (g_pos >= 0)[:, None, None, :], values[:, :, window:])
            out = gates[..., :1] * near + gates[..., 1:] * far
        else:
            g_sees = g_pos >= 0
            if cfg.local == "sliding":  # a key counted once: set members still in the window are local
                g_sees = g_sees & (g_pos <= (step.positions - window)[:, None])
            sees = torch.cat([step.local_sees, g_sees], dim=1)[:, None, None, :]  # (B, 1, 1, W + K)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=sees, scale=layer.scale)
        if step.closing is not None:
            _close_blocks(ring, step.ring_positions, step.closing, window)
    return linear_of(layer.o_proj, out.reshape(batch, d))  # (B, H, 1, D) -> (B, d)


def _close_blocks(ring: RingCache, ring_positions: Tensor, rows: Tensor, window: int) -> None:
    """Merge the just-finished block of ``rows`` into their global sets (``KVCache._close_block``)."""
    k = ring.global_scores.shape[1]
    # A full block fills slots 0..W-1 in position order: the candidates merge_topk expects.
    top = merge_topk(ring.global_scores[rows], ring.global_positions[rows], ring.scores[rows], ring_positions[rows])
    # top.slots index cat([set, block]); in the buffer the block is [0, W) and the set [W, W + K)
    take = torch.where(top.slots < k, top.slots + window, top.slots - k)  # (B', K)
    kv = ring.kv[rows]  # (B', 2, H, W + K, D)
    gathered = kv.gather(3, take[:, None, None, :, None].expand(-1, 2, kv.shape[2], -1, kv.shape[4]))
    ring.kv[rows, :, :, window:] = gathered
    ring.global_scores[rows], ring.global_positions[rows] = top.scores, top.indices
