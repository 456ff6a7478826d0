"""The one entry point of hybrid attention: validate the inputs, then hand them to a backend.

Backends live in a registry keyed by name (the idea of Hugging Face's `ALL_ATTENTION_FUNCTIONS`):
the model says *what* attention it wants, `backend` says *how* it is computed.

    blocked    pure-PyTorch tiled kernel, O(N·(window + K)), forward + backward, every device; its
               tiles run through F.scaled_dot_product_attention (on CUDA: SDPA's fused kernels)
    sdpa       the same as blocked (the name AttentionConfig.backend offers for "SDPA kernels")
    flex       FlexAttention with a sparse BlockMask (CUDA; see flex.py)
    reference  dense float64 masked attention, O(N²): a debugging aid and test oracle only
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from hybridformer.attention.blocked import blocked_attention
from hybridformer.attention.flex import flex_attention_backend
from hybridformer.attention.reference import dense_mask, reference_attention

__all__ = ["ATTENTION_BACKENDS", "AttentionBackend", "register_backend", "hybrid_attention"]

AttentionBackend = Callable[..., Tensor]
"""fn(q, k, v, *, window, local, global_indices, causal, key_padding_mask, global_queries_attend_all,
scale) -> (B, H, N, D), called with already validated inputs."""

ATTENTION_BACKENDS: dict[str, AttentionBackend] = {}
"""Registered backends by name; `hybrid_attention(..., backend=name)` looks them up here."""


def register_backend(name: str, fn: AttentionBackend) -> None:
    """Make `fn` available as `hybrid_attention(..., backend=name)` (replaces an existing entry)."""
    ATTENTION_BACKENDS[name] = fn


def _reference_backend(q: Tensor, k: Tensor, v: Tensor, *, scale: float | None, **rule) -> Tensor:
    mask = dense_mask(q.shape[0], q.shape[2], device=q.device, **rule)
    return reference_attention(q, k, v, mask, scale).to(q.dtype)


register_backend("blocked", blocked_attention)
register_backend("sdpa", blocked_attention)
register_backend("flex", flex_attention_backend)
register_backend("reference", _reference_backend)


def _fail(argument: str, message: str) -> None:
    raise ValueError(f"{argument}: {message}")


def _validate(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    local: str,
    global_indices: Tensor | None,
    key_padding_mask: Tensor | None,
    global_queries_attend_all: bool,
    scale: float | None,
) -> None:
    """Raise ValueError naming the argument and what was seen, for anything malformed."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor):
            _fail(name, f"expected a Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            _fail(name, f"expected shape (B, H, N, D), got {tuple(x.shape)}")
        if not x.is_floating_point():
            _fail(name, f"expected a floating dtype, got {x.dtype}")
    if k.shape != q.shape or v.shape != q.shape:
        _fail("k, v", f"expected the shape of q {tuple(q.shape)}, got k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        _fail("k, v", f"expected the dtype of q ({q.dtype}), got k {k.dtype}, v {v.dtype}")
    if k.device != q.device or v.device != q.device:
        _fail("k, v", f"expected the device of q ({q.device}), got k {k.device}, v {v.device}")
    batch, _, n, _ = q.shape
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        _fail("window", f"expected an int >= 1, got {window!r}")
    if local not in ("block", "sliding"):
        _fail("local", f"expected 'block' or 'sliding', got {local!r}")
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        _fail("scale", f"expected a finite float or None, got {scale!r}")
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
            seen = getattr(key_padding_mask, "dtype", type(key_padding_mask).__name__)
            _fail("key_padding_mask", f"expected a bool Tensor (True = real token), got {seen}")
        if key_padding_mask.shape != (batch, n):
            seen = tuple(key_padding_mask.shape)
            _fail("key_padding_mask", f"expected shape (B, N) = {(batch, n)}, got {seen}")
        if key_padding_mask.device != q.device:
            _fail("key_padding_mask", f"expected device {q.device}, got {key_padding_mask.device}")
    if global_indices is None:
        return
    if not isinstance(global_indices, Tensor) or global_indices.is_floating_point() or global_indices.dtype == torch.bool:
        seen = getattr(global_indices, "dtype", type(global_indices).__name__)
        _fail("global_indices", f"expected an integer (Long) Tensor, got {seen}")
    blocks = math.ceil(n / window)
    per_sequence = global_indices.dim() == 2 and global_indices.shape[0] == batch
    per_block = global_indices.dim() == 3 and global_indices.shape[:2] == (batch, blocks)
    if not (per_sequence or per_block):
        _fail(
            "global_indices",
            f"expected shape (B, K) = ({batch}, K) or (B, ceil(N / window), K) = ({batch}, {blocks}, K)"
            f" for q {tuple(q.shape)}, window {window}; got {tuple(global_indices.shape)}",
        )
    if global_indices.device != q.device:
        _fail("global_indices", f"expected device {q.device}, got {global_indices.device}")
    if global_indices.numel() and (global_indices.min() < -1 or global_indices.max() >= n):
        low, high = global_indices.min().item(), global_indices.max().item()
        _fail("global_indices", f"entries must lie in [-1, N) = [-1, {n}), got min {low}, max {high}")
    if global_queries_attend_all and per_block:
        seen = tuple(global_indices.shape)
        _fail("global_queries_attend_all", f"needs one global set per sequence, global_indices (B, K); got {seen}")


def _auto_backend(q: Tensor) -> str:
    return "flex" if q.is_cuda else "blocked"


def hybrid_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    local: str = "block",
    global_indices: Tensor | None = None,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    global_queries_attend_all: bool = False,
    scale: float | None = None,
    backend: str = "auto",
) -> Tensor:
    """Hybrid local + global attention (SPEC §2, issue 2), in O(N·(window + K)).

    Query i sees key j iff (local(i, j) or j is in the global set of i's block) and (j <= i if causal)
    and j is not padding; with `global_queries_attend_all`, a global query i sees every non-padding
    key (j <= i if causal). One softmax over what i sees, each key counted once; a query that sees no
    key outputs zeros.

    Args:
        q, k, v: (B, H, N, D), float32 or bfloat16 (float16/float64 also work); same dtype and device.
        window: local window size (>= 1); also the size of the query blocks of `global_indices`.
        local: "block": i sees its own block of `window` tokens (i // window == j // window);
            "sliding": |i - j| <= window // 2, or i - window < j <= i when causal.
        global_indices: LongTensor (B, K) (one set per sequence) or (B, ceil(N / window), K) (one set
            per query block); -1 marks an empty slot; duplicates count once.
        causal: only keys j <= i.
        key_padding_mask: bool (B, N), True = real token.
        global_queries_attend_all: the global tokens of a (B, K) set attend to every non-padding key.
        scale: score scale, default 1 / sqrt(D).
        backend: "auto" (flex on CUDA, blocked elsewhere) or a name in `ATTENTION_BACKENDS`.

    Returns:
        (B, H, N, D) in the dtype of q. Differentiable with respect to q, k and v.

    Raises:
        ValueError: naming the argument and the shapes/values seen, for malformed input.
    """
    _validate(q, k, v, window, local, global_indices, key_padding_mask, global_queries_attend_all, scale)
    name = _auto_backend(q) if backend == "auto" else backend
    if name not in ATTENTION_BACKENDS:
        _fail("backend", f"expected 'auto' or one of {sorted(ATTENTION_BACKENDS)}, got {backend!r}")
    if global_indices is not None:
        global_indices = global_indices.long()
    return ATTENTION_BACKENDS[name](
        q,
        k,
        v,
        window=window,
        local=local,
        global_indices=global_indices,
        causal=causal,
        key_padding_mask=key_padding_mask,
        global_queries_attend_all=global_queries_attend_all,
        scale=scale,
    )
