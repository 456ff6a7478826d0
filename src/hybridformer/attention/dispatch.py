"""The one entry point of hybrid attention: validate the inputs, then hand them to a backend.

Backends live in a registry keyed by name (the idea of Hugging Face's `ALL_ATTENTION_FUNCTIONS`):
the model says *what* attention it wants, `backend` says *how* it is computed. A backend is called
as ``fn(q, k, v, spec)`` with a :class:`~hybridformer.attention.masks.MaskSpec`.

`hybrid_attention` is the user-facing boundary: it checks shapes, dtypes *and values* (global indices
in range, which reads them on the host). `attend` is the same dispatch without any check, for callers
that validated once already (`HybridAttention`): it never syncs with the host.

Keys of another length than the queries (cross-attention, cached decoding: Nk != Nq) are accepted
where hybrid attention reduces to dense attention: no global indices and ``local="block"`` with
``window >= Nk``, so every query sees every key (causal: the queries are the last Nq positions).
They go to :func:`~hybridformer.attention.dense.dense_attention` (the reference backend: to the float64
oracle); any other mask needs Nk == Nq and says so.

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
from hybridformer.attention.dense import dense_attention
from hybridformer.attention.flex import flex_attention_backend
from hybridformer.attention.masks import MaskSpec
from hybridformer.attention.reference import all_keys_mask, dense_mask, reference_attention

__all__ = ["ATTENTION_BACKENDS", "AttentionBackend", "MaskSpec", "register_backend", "hybrid_attention", "attend"]

AttentionBackend = Callable[[Tensor, Tensor, Tensor, MaskSpec], Tensor]
"""fn(q, k, v, spec) -> (B, H, N, D), q/k/v (B, H, N, D), called with already validated inputs."""

ATTENTION_BACKENDS: dict[str, AttentionBackend] = {}
"""Registered backends by name; `hybrid_attention(..., backend=name)` looks them up here."""


def register_backend(name: str, fn: AttentionBackend) -> None:
    """Make `fn` available as `hybrid_attention(..., backend=name)` (replaces an existing entry)."""
    ATTENTION_BACKENDS[name] = fn


def _reference_backend(q: Tensor, k: Tensor, v: Tensor, spec: MaskSpec) -> Tensor:
    batch, nq, nk = q.shape[0], q.shape[2], k.shape[2]
    if nq != nk:  # validated to be dense: every (earlier) real key
        mask = all_keys_mask(batch, nq, nk, causal=spec.causal, key_padding_mask=spec.key_padding_mask, device=q.device)
    else:
        mask = dense_mask(batch, nq, spec, device=q.device)
    return reference_attention(q, k, v, mask, spec.scale).to(q.dtype)


register_backend("blocked", blocked_attention)
register_backend("sdpa", blocked_attention)
register_backend("flex", flex_attention_backend)
register_backend("reference", _reference_backend)


def _fail(argument: str, message: str) -> None:
    raise ValueError(f"{argument}: {message}")


def _validate_metadata(q: Tensor, k: Tensor, v: Tensor, spec: MaskSpec) -> None:
    """Raise ValueError naming the argument, for malformed shapes, dtypes, devices or options.

    Reads metadata only: no host sync.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor):
            _fail(name, f"expected a Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            _fail(name, f"expected shape (B, H, N, D), got {tuple(x.shape)}")
        if not x.is_floating_point():
            _fail(name, f"expected a floating dtype, got {x.dtype}")
    batch, heads, n, dim = q.shape
    nk = k.shape[2]
    if k.shape != v.shape or k.shape[:2] != (batch, heads) or k.shape[3] != dim:
        _fail(
            "k, v",
            f"expected the shape of q {tuple(q.shape)}, got k {tuple(k.shape)}, v {tuple(v.shape)} "
            f"(cross-attention: k and v both (B, H, Nk, D))",
        )
    if k.dtype != q.dtype or v.dtype != q.dtype:
        _fail("k, v", f"expected the dtype of q ({q.dtype}), got k {k.dtype}, v {v.dtype}")
    if k.device != q.device or v.device != q.device:
        _fail("k, v", f"expected the device of q ({q.device}), got k {k.device}, v {v.device}")
    window, global_indices, key_padding_mask = spec.window, spec.global_indices, spec.key_padding_mask
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        _fail("window", f"expected an int >= 1, got {window!r}")
    if spec.local not in ("block", "sliding"):
        _fail("local", f"expected 'block' or 'sliding', got {spec.local!r}")
    if spec.scale is not None and not (isinstance(spec.scale, (int, float)) and math.isfinite(spec.scale)):
        _fail("scale", f"expected a finite float or None, got {spec.scale!r}")
    if nk != n:
        if global_indices is not None or spec.local != "block" or window < nk:
            _fail(
                "k, v",
                f"keys of another length than the queries (q {tuple(q.shape)}, k {tuple(k.shape)}) need dense "
                f"attention: global_indices=None, local='block' and window >= Nk = {nk}; got "
                f"global_indices {'None' if global_indices is None else 'given'}, local {spec.local!r}, window {window}",
            )
        if spec.causal and n > nk:
            _fail("causal", f"the {n} queries must be the last of the {nk} keys (Nq <= Nk)")
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
            seen = getattr(key_padding_mask, "dtype", type(key_padding_mask).__name__)
            _fail("key_padding_mask", f"expected a bool Tensor (True = real token), got {seen}")
        if key_padding_mask.shape != (batch, nk):
            seen = tuple(key_padding_mask.shape)
            _fail("key_padding_mask", f"expected shape (B, {'N' if nk == n else 'Nk'}) = {(batch, nk)}, got {seen}")
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
    if spec.global_queries_attend_all and per_block:
        seen = tuple(global_indices.shape)
        _fail("global_queries_attend_all", f"needs one global set per sequence, global_indices (B, K); got {seen}")


def _validate_values(q: Tensor, spec: MaskSpec) -> None:
    """Raise ValueError for global indices out of range. Reads them on the host (a sync)."""
    n, indices = q.shape[2], spec.global_indices
    if indices is not None and indices.numel() and (indices.min() < -1 or indices.max() >= n):
        low, high = indices.min().item(), indices.max().item()
        _fail("global_indices", f"entries must lie in [-1, N) = [-1, {n}), got min {low}, max {high}")


def _backend_name(q: Tensor, backend: str) -> str:
    name = ("flex" if q.is_cuda else "blocked") if backend == "auto" else backend
    if name not in ATTENTION_BACKENDS:
        _fail("backend", f"expected 'auto' or one of {sorted(ATTENTION_BACKENDS)}, got {backend!r}")
    return name


def attend(q: Tensor, k: Tensor, v: Tensor, spec: MaskSpec, backend: str = "auto") -> Tensor:
    """`hybrid_attention` without any check (callers validated q, k, v and `spec` already); no host sync.

    Args:
        q: (B, H, N, D); k, v: (B, H, N, D), or (B, H, Nk, D) where `spec` is dense (see the module
            docstring).
        spec: the mask; `spec.global_indices` must be a LongTensor.
        backend: "auto" or a name in `ATTENTION_BACKENDS`.

    Returns:
        (B, H, N, D) in the dtype of q.
    """
    name = _backend_name(q, backend)
    if k.shape[2] != q.shape[2] and name != "reference":
        return dense_attention(q, k, v, key_padding_mask=spec.key_padding_mask, causal=spec.causal, scale=spec.scale)
    return ATTENTION_BACKENDS[name](q, k, v, spec)


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
            k, v may be (B, H, Nk, D) with Nk != N (cross-attention, cached decoding) where the mask
            is dense: global_indices None, local "block", window >= Nk (causal: the queries are the
            last N of the Nk positions).
        window: local window size (>= 1); also the size of the query blocks of `global_indices`.
        local: "block": i sees its own block of `window` tokens (i // window == j // window);
            "sliding": |i - j| <= window // 2, or i - window < j <= i when causal.
        global_indices: LongTensor (B, K) (one set per sequence) or (B, ceil(N / window), K) (one set
            per query block); -1 marks an empty slot; duplicates count once.
        causal: only keys j <= i.
        key_padding_mask: bool (B, Nk), True = real token.
        global_queries_attend_all: the global tokens of a (B, K) set attend to every non-padding key.
        scale: score scale, default 1 / sqrt(D).
        backend: "auto" (flex on CUDA, blocked elsewhere) or a name in `ATTENTION_BACKENDS`.

    Returns:
        (B, H, N, D) in the dtype of q. Differentiable with respect to q, k and v.

    Raises:
        ValueError: naming the argument and the shapes/values seen, for malformed input.
    """
    spec = MaskSpec(
        window=window,
        local=local,
        global_indices=global_indices,
        causal=causal,
        key_padding_mask=key_padding_mask,
        global_queries_attend_all=global_queries_attend_all,
        scale=scale,
    )
    _validate_metadata(q, k, v, spec)
    _validate_values(q, spec)
    _backend_name(q, backend)
    if global_indices is not None:
        spec = spec.replace(global_indices=global_indices.long())
    return attend(q, k, v, spec, backend)
