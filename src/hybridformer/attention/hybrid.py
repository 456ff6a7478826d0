"""`HybridAttention`: the self-attention layer of hybridformer (SPEC §2).

Projections q/k/v/o around one of two attentions:

- ``kind="full"``: ordinary dense attention (:func:`~hybridformer.attention.dense.dense_attention`,
  fused SDPA) with the padding (and causal) mask — numerically BERT/RoBERTa's self-attention, so pretrained checkpoints load as is.
- ``kind="hybrid"``: local windows plus the ``global_k`` tokens picked by a learned scorer
  (``scorer.py``). ``combine="union"`` is one softmax over window ∪ selected, one call of the kernel
  :func:`hybridformer.attention.hybrid_attention`. ``combine="gated"`` is NSA-style: a local branch
  (the kernel without global keys) and a global branch (each query over only the selected keys,
  ``selected.py``, O(N·K)), each with its own softmax, mixed per head by sigmoid gates read from the
  token's hidden state.

- ``kind="local"``: the local windows alone; no selector is built or run.

The global set comes from ``selection`` (``AttentionConfig.selection``): ``"scorer"`` (below) or
``"compressed"`` (NSA's compressed-block selection, ``compressed.py``: a gated compressed branch whose
attention probabilities choose each query block's top blocks). ``forward(..., global_indices=)``
takes a user-supplied set instead (an oracle, or a task's known tokens): no selector runs; the
compressed branch, when configured, still adds its output.

The scorer learns through score-weighted keys, straight-through (``scorer.py``): the selected keys'
logits get a bias ``s_j - stopgrad(s_j)``, zero in value, so forward outputs are exactly those of the
hard selection while ``d loss / d s_j`` is that of weighting key j by ``exp(s_j)``. In training the
selection adds Gumbel noise (``AttentionConfig.selection_noise``) to explore; eval does not.

Head reshapes infer the head count from the projections (``view(B, N, -1, head_dim)``), so a layer
whose q/k/v projections (and ``gate_proj``) are sharded by heads for tensor parallelism runs with its
local heads; ``o_proj`` then holds the matching input columns and the shards' outputs sum to the
layer's. The forward pass never syncs with the host: inputs are checked on metadata only and the
kernel is reached through ``dispatch.attend`` (no per-call value checks), so the layer compiles.

Dropout on attention probabilities is applied for ``kind="full"`` only (SDPA's ``dropout_p``, training
only). The hybrid kernel never materialises the probabilities, so ``kind="hybrid"`` with
``dropout > 0`` is refused at construction rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hybridformer.attention.cache import KVCache, cached_attention
from hybridformer.attention.compressed import CompressedSelection
from hybridformer.attention.compressed_cache import compressed_cached_attention
from hybridformer.attention.config import AttentionConfig
from hybridformer.attention.dense import dense_attention
from hybridformer.attention.dispatch import attend
from hybridformer.attention.masks import MaskSpec, global_query_rows
from hybridformer.attention.pooled import PooledSelection
from hybridformer.attention.pooled_cache import pooled_cached_attention
from hybridformer.attention.scorer import (
    TokenScorer,
    select_prefix_topk,
    select_topk,
    selected_mask,
    selection_scores,
    straight_through_bias,
)
from hybridformer.attention.selected import selected_attention
from hybridformer.config import check
from hybridformer.initialization import allocating, init_children

__all__ = ["AttentionOutput", "HybridAttention"]


@dataclass
class AttentionOutput:
    """What one `HybridAttention` layer returns."""

    hidden_states: Tensor
    """(B, N, d_model) attention output after `o_proj`."""
    global_indices: Tensor | None
    """Selected global tokens: (B, K) non-causal, (B, ceil(N / window), K) causal (with a cache: one
    row per query block touched by the new tokens); -1 = empty slot. None for `kind="full"` or K = 0."""
    scores: Tensor | None = None
    """(B, N) token scores from the scorer (with gradient); None for `kind="full"`/`"local"`, for
    selection="compressed" and for user-supplied global_indices."""


def _fold_key_bias(
    q: Tensor, k: Tensor, v: Tensor, key_bias: Tensor, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Append one head dimension so the kernel adds `key_bias` (B, N) to the logits of key j:
    ``[q_i, 1]·[k_j, b_j / scale]·scale = q_i·k_j·scale + b_j``.

    v gets a zero column (the kernel takes q, k, v of one head size); drop it from the output. Used
    only when the scorer needs a gradient (training), costing one extra head dimension.
    """
    batch, heads, n, _ = q.shape
    bias = (key_bias / scale).to(k.dtype)[:, None, :, None].expand(batch, heads, n, 1)  # (B, H, N, 1)
    return (
        torch.cat([q, q.new_ones(batch, heads, n, 1)], dim=-1),
        torch.cat([k, bias], dim=-1),
        torch.cat([v, v.new_zeros(batch, heads, n, 1)], dim=-1),
    )


class HybridAttention(nn.Module):
    """Multi-head self-attention, full or hybrid (local + learned global top-k), with a KV cache.

    Args:
        config: the layer's :class:`AttentionConfig`.

    Submodules: `q_proj`, `k_proj`, `v_proj`, `o_proj` (nn.Linear d_model -> d_model; a deploy
    transform may replace the first three by one `qkv_proj`), and for
    `kind="hybrid"` the token `scorer` (:class:`TokenScorer`, selection="scorer") or `compressed`
    (:class:`~hybridformer.attention.compressed.CompressedSelection`, selection="compressed"), plus `gate_proj` (d_model -> 2·n_heads,
    output 2·h + g = gate g (0 local, 1 global) of head h, so a contiguous head shard of its rows is a
    shard of heads) for `combine="gated"`. The constructor allocates without drawing random numbers,
    then calls :meth:`init_weights`.
    """

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        hybrid = config.kind == "hybrid"
        check(
            not (hybrid and config.dropout > 0),
            "dropout",
            f"attention-probability dropout is only available with kind='full' (the hybrid kernel never "
            f"materialises the probabilities); got dropout={config.dropout} with kind='hybrid'",
        )
        check(
            not (config.causal and config.global_queries_attend_all),
            "global_queries_attend_all",
            "cannot be combined with causal=True: whether token i is selected depends on later tokens",
        )
        self.config = config
        self.qkv_proj: nn.Module | None = None
        """q, k and v in one layer (d_model -> 3·d_model, rows [q | k | v]) once a deploy transform
        fused them (:func:`hybridformer.compression.int8_fuse.fuse_qkv`), which deletes the three; None in training."""
        d = config.d_model
        with allocating():  # draws nothing: init_weights does
            self.q_proj = nn.Linear(d, d, bias=config.bias)
            self.k_proj = nn.Linear(d, d, bias=config.bias)
            self.v_proj = nn.Linear(d, d, bias=config.bias)
            self.o_proj = nn.Linear(d, d, bias=config.bias)
            if hybrid and config.selection == "scorer":
                self.scorer = TokenScorer(d, config.scorer_hidden, config.score_cap)
            if hybrid and config.selection == "compressed":
                self.compressed = CompressedSelection(
                    d,
                    config.n_heads,
                    window=config.window,
                    block=config.compress_block,
                    global_k=config.global_k,
                    causal=config.causal,
                    vote=config.compress_vote,
                    summary=config.compress_summary,
                )
            if hybrid and config.selection == "pooled":
                self.pooled = PooledSelection(
                    d, config.n_heads, window=config.window, block=config.pooled_block, global_k=config.global_k,
                    causal=config.causal, pinned=config.pinned_global,
                )
            if hybrid:
                if config.combine == "gated":
                    self.gate_proj = nn.Linear(d, 2 * config.n_heads)
        self.init_weights()

    def init_weights(self) -> None:
        """(Re)initialise every parameter from the global RNG, in registration order: q, k, v, o
        projections and `gate_proj` with nn.Linear's defaults, the scorer by
        :meth:`TokenScorer.init_weights`, the compressed branch by its own ``init_weights``. A layer built on the meta device, moved with ``to_empty``
        and initialised under a seed equals one built eagerly under that seed."""
        init_children(self)

    @property
    def scale(self) -> float:
        return self.config.head_dim**-0.5

    def forward(
        self,
        hidden_states: Tensor,
        key_padding_mask: Tensor | None = None,
        cache: KVCache | None = None,
        global_indices: Tensor | None = None,
    ) -> AttentionOutput:
        """Attend.

        Args:
            hidden_states: (B, N, d_model). With a cache: only the new tokens (N = 1 per decoding step,
                or a whole prompt at once).
            key_padding_mask: bool (B, N), True = real token; None = all real. With a cache it covers
                the new tokens only (earlier ones are remembered).
            cache: a :class:`KVCache` for step-by-step causal decoding, updated in place; None for a
                plain forward over the whole sequence.
            global_indices: a user-supplied global set instead of the selector's (kind="hybrid", no
                cache): LongTensor (B, K) one set per sequence or (B, ceil(N / window), K) one per
                query block, -1 = empty slot, positions of real tokens. Causality still applies (a
                causal query never sees a later selected key). Values are not checked here (that
                would sync with the host); :func:`hybridformer.attention.hybrid_attention` checks them.

        Returns:
            :class:`AttentionOutput`.
        """
        self._check_inputs(hidden_states, key_padding_mask, cache, global_indices)
        if self.qkv_proj is not None:  # fused by a deploy transform: one product for q, k and v
            qkv = self.qkv_proj(hidden_states)  # (B, N, 3·d_model) = [q | k | v]
            q, k, v = (self._split_heads(part) for part in qkv.chunk(3, dim=-1))
        else:
            q, k, v = (self._split_heads(proj(hidden_states)) for proj in (self.q_proj, self.k_proj, self.v_proj))
        cfg = self.config
        if cache is not None:
            return self._forward_cached(hidden_states, q, k, v, key_padding_mask, cache)
        if cfg.kind == "full":
            out = self._dense(q, k, v, key_padding_mask)
            return AttentionOutput(self.o_proj(self._merge_heads(out)), None)

        n = hidden_states.shape[1]
        scores = extra = None
        indices = global_indices
        pooled = cfg.kind == "hybrid" and cfg.selection == "pooled" and not self._within_one_window(n)
        if pooled or (cfg.kind == "hybrid" and cfg.selection == "compressed"):
            selector = self.compressed if cfg.selection == "compressed" else self.pooled
            branch = selector(hidden_states, q, k, v, key_padding_mask, self.scale)
            extra = branch.output  # (B, H, N, D) the gated compressed / pooled branch
            if indices is None and cfg.global_k > 0:
                indices = branch.global_indices
        elif cfg.kind == "hybrid" and cfg.selection != "pooled" and indices is None:
            scores = self.scorer(hidden_states)  # (B, N)
            if cfg.global_k > 0:
                noise = cfg.selection_noise if self.training else 0.0
                if cfg.causal:
                    indices = select_prefix_topk(scores, cfg.global_k, cfg.window, key_padding_mask, noise)
                else:
                    indices = select_topk(scores, cfg.global_k, key_padding_mask, noise, cfg.pinned_global)
        bias = None
        if scores is not None and indices is not None and torch.is_grad_enabled() and scores.requires_grad:
            bias = straight_through_bias(scores, selected_mask(indices, n))  # (B, N), zero in value
        spec = MaskSpec(
            window=cfg.window,
            local=cfg.local,
            global_indices=indices,
            causal=cfg.causal,
            key_padding_mask=key_padding_mask,
            global_queries_attend_all=cfg.global_queries_attend_all and indices is not None and indices.dim() == 2,
            scale=self.scale,
        )
        if cfg.combine == "union" or cfg.kind == "local":
            out = self._union(q, k, v, spec, bias)
        else:
            out = self._gated(hidden_states, q, k, v, spec, bias)
        if pooled and cfg.global_queries_attend_all:
            # The pinned tokens are the global queries: their rows attend to every real key.
            pinned = self.pooled.pinned_positions(q.shape[0], n, key_padding_mask, q.device)  # (B, pinned)
            out = global_query_rows(q, k, v, out, pinned[:, None, :], spec)
        if extra is not None:
            out = out + extra
        return AttentionOutput(self.o_proj(self._merge_heads(out)), indices, scores)

    def _within_one_window(self, n: int) -> bool:
        """Whether every query's block window already holds every key (non-causal, N <= window): there
        is no far token to select, so the pooled layer is dense attention (its branch would only add a
        second, gated read of the same keys; on 64-token reviews that cost MiniLM ~1 point, issue 24)."""
        cfg = self.config
        return not cfg.causal and cfg.local == "block" and n <= cfg.window

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, n, _ = x.shape
        # -1: the local head count, fewer than config.n_heads when the projection is sharded by heads.
        return x.view(batch, n, -1, self.config.head_dim).transpose(1, 2)  # (B, H, N, D)

    def _merge_heads(self, x: Tensor) -> Tensor:
        batch, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(batch, n, -1)  # (B, N, H·D)

    def _dense(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """Dense attention with this layer's causality, scale and (training only) dropout."""
        dropout = self.config.dropout if self.training else 0.0
        return dense_attention(
            q, k, v, key_padding_mask=key_padding_mask, causal=self.config.causal, scale=self.scale, dropout_p=dropout
        )

    def _union(self, q: Tensor, k: Tensor, v: Tensor, spec: MaskSpec, bias: Tensor | None) -> Tensor:
        """One softmax over window ∪ selected; `bias` (B, N) is the scorer's straight-through bias."""
        dim = q.shape[-1]
        if bias is None and spec.local == "block" and q.shape[2] <= spec.window:
            # One block holds the whole sequence: every query already sees every key (causal: every
            # earlier key), so the union is dense attention; fused SDPA computes it with less overhead.
            # Only without the scorer's straight-through bias, i.e. at inference; training keeps
            # the kernel path unchanged.
            return self._dense(q, k, v, spec.key_padding_mask)
        if bias is not None:
            q, k, v = _fold_key_bias(q, k, v, bias, self.scale)
        out = attend(q, k, v, spec, self.config.backend)
        return out[..., :dim]

    def _gated(
        self, hidden_states: Tensor, q: Tensor, k: Tensor, v: Tensor, spec: MaskSpec, bias: Tensor | None
    ) -> Tensor:
        """Local branch (the kernel without global keys) and global branch, mixed by per-head gates."""
        local = attend(q, k, v, spec.replace(global_indices=None, global_queries_attend_all=False), self.config.backend)
        gates = self._gates(hidden_states)  # (B, H, N, 2)
        out = gates[..., :1] * local
        if spec.global_indices is not None:
            out = out + gates[..., 1:] * selected_attention(q, k, v, spec, key_bias=bias)
        return out

    def _gates(self, hidden_states: Tensor) -> Tensor:
        """Per-head sigmoid gates of the local and global branch: (B, H, N, 2)."""
        batch, n, _ = hidden_states.shape
        gates = torch.sigmoid(self.gate_proj(hidden_states)).view(batch, n, -1, 2)  # (B, N, H, 2), H local
        return gates.transpose(1, 2)  # (B, H, N, 2)

    def _forward_cached(
        self,
        hidden_states: Tensor,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_padding_mask: Tensor | None,
        cache: KVCache,
    ) -> AttentionOutput:
        cfg = self.config
        gates = self._gates(hidden_states) if cfg.kind == "hybrid" and cfg.combine == "gated" else None
        if cfg.kind == "hybrid" and cfg.selection == "compressed":
            out, sets = compressed_cached_attention(
                cache, self.compressed, hidden_states, q, k, v,
                key_padding_mask=key_padding_mask, gates=gates, local=cfg.local, scale=self.scale,
            )
            return AttentionOutput(self.o_proj(self._merge_heads(out)), sets)
        if cfg.kind == "hybrid" and cfg.selection == "pooled":
            out, sets = pooled_cached_attention(
                cache, self.pooled, hidden_states, q, k, v,
                key_padding_mask=key_padding_mask, gates=gates, local=cfg.local, scale=self.scale,
            )
            return AttentionOutput(self.o_proj(self._merge_heads(out)), sets)
        scores = ranked = None
        if cfg.kind == "hybrid":
            scores = self.scorer(hidden_states)  # (B, T)
            ranked = selection_scores(scores, key_padding_mask)
        global_k = cfg.global_k if cfg.kind == "hybrid" else 0
        result = cached_attention(
            cache,
            q,
            k,
            v,
            key_padding_mask=key_padding_mask,
            selection_scores=ranked,
            gates=gates,
            kind=cfg.kind,
            window=cfg.window,
            local=cfg.local,
            global_k=global_k,
            scale=self.scale,
        )
        hidden = self.o_proj(self._merge_heads(result.output))
        return AttentionOutput(hidden, result.global_indices, scores)

    def _check_inputs(
        self,
        hidden_states: Tensor,
        key_padding_mask: Tensor | None,
        cache: KVCache | None,
        global_indices: Tensor | None,
    ) -> None:
        d = self.config.d_model
        if not isinstance(hidden_states, Tensor):
            seen = type(hidden_states).__name__
            raise ValueError(f"hidden_states: expected a Tensor (B, N, d_model={d}), got {seen}")
        shape = tuple(hidden_states.shape)
        if hidden_states.dim() != 3 or shape[-1] != d or shape[1] == 0:
            raise ValueError(f"hidden_states: expected shape (B, N >= 1, d_model={d}), got {shape}")
        batch, n, _ = shape
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
                seen = getattr(key_padding_mask, "dtype", type(key_padding_mask).__name__)
                raise ValueError(f"key_padding_mask: expected a bool tensor (True = real token), got {seen}")
            if tuple(key_padding_mask.shape) != (batch, n):
                raise ValueError(
                    f"key_padding_mask: expected shape (B, N) = {(batch, n)} to match hidden_states {shape}, "
                    f"got {tuple(key_padding_mask.shape)}"
                )
        if cache is not None:
            if not self.config.causal:
                raise ValueError("cache: step-by-step decoding needs a causal layer (config causal=True)")
            cache.check_batch(batch)
        if global_indices is not None:
            self._check_global_indices(global_indices, batch, n, cache)

    def _check_global_indices(self, global_indices: Tensor, batch: int, n: int, cache: KVCache | None) -> None:
        """Metadata checks of a user-supplied set (no host sync)."""
        cfg = self.config
        if cfg.kind != "hybrid":
            raise ValueError(f"global_indices: needs kind='hybrid', got kind={cfg.kind!r} (no global keys)")
        if cache is not None:
            raise ValueError("global_indices: not supported with a cache (decoding selects its own sets)")
        if not isinstance(global_indices, Tensor) or global_indices.dtype != torch.long:
            seen = getattr(global_indices, "dtype", type(global_indices).__name__)
            raise ValueError(f"global_indices: expected a LongTensor, got {seen}")
        blocks = -(-n // cfg.window)
        shape = tuple(global_indices.shape)
        if not (
            (len(shape) == 2 and shape[0] == batch) or (len(shape) == 3 and shape[:2] == (batch, blocks))
        ):
            raise ValueError(
                f"global_indices: expected (B, K) = ({batch}, K) or (B, ceil(N / window), K) = ({batch}, {blocks}, K), got {shape}"
            )
        if cfg.global_queries_attend_all and len(shape) == 3:
            raise ValueError("global_indices: global_queries_attend_all needs one set per sequence (B, K)")
