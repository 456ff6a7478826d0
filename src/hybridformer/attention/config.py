"""Configuration of one attention layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hybridformer.config import check


@dataclass
class AttentionConfig:
    """How one self-attention layer attends.

    `kind="full"` is ordinary dense attention (what a pretrained BERT/RoBERTa checkpoint was trained
    with); `kind="hybrid"` is local windows plus a learned global top-k (SPEC §2); `kind="local"` is
    the local windows alone (no selector is built or run; `global_k` and `selection` are ignored).
    """

    d_model: int = 512
    """Hidden size of the tokens entering the layer."""
    n_heads: int = 8
    """Number of attention heads; must divide d_model."""
    kind: Literal["full", "hybrid", "local"] = "hybrid"
    """Dense attention over all keys, hybrid local + global top-k attention, or local windows only."""
    window: int = 128
    """Local window size in tokens (block size for `local="block"`)."""
    local: Literal["block", "sliding"] = "block"
    """`block`: keys in the query's own fixed window; `sliding`: the `window` nearest keys."""
    global_k: int = 64
    """Number of tokens the learned scorer selects (per sequence, or per query block when causal)."""
    combine: Literal["union", "gated"] = "union"
    """`union`: one softmax over window ∪ selected; `gated`: one softmax per branch, sigmoid gates."""
    causal: bool = False
    """Decoder-style attention: query i only sees keys j <= i, selection is prefix-consistent."""
    global_queries_attend_all: bool = False
    """Selected tokens also attend to every key (Longformer-style global queries); with
    selection="pooled", the `pinned_global` tokens (the sets are per window, so only those are global)."""
    pinned_global: int = 0
    """The first `pinned_global` positions (e.g. [CLS]) are always among the selected tokens, the
    scorer picking the other global_k − pinned_global (Longformer's recipe for classification:
    with `global_queries_attend_all` the [CLS] query then reads the whole sequence). Non-causal only.
    selection="pooled": they are in every query window's set, the pooled selection picking the other
    global_k − pinned_global per window."""
    selection: Literal["scorer", "compressed", "pooled"] = "pooled"
    """How `kind="hybrid"` picks its global tokens. `scorer`: a per-token score from the hidden state,
    learnt straight-through (``scorer.py``). `compressed`: NSA's compressed-block selection
    (``compressed.py``): each query block attends to mean-pooled summaries of `compress_block`-token
    blocks; that attention is a third, gated output branch (so it learns from the main loss, on every
    block, not only on picked ones), and its probabilities, combined over the block's queries
    (`compress_vote`) and summed over the heads, choose the block's top ``global_k / compress_block``
    blocks. Costs O(N·N/compress_block) more. `pooled`: query-block pooled selection (``pooled.py``):
    the queries minus the keys of each `pool_block` tokens are pooled into one query per head
    (content-weighted, the mean at init; the key part favours keys unlike the block's own), which
    attends over every token key — a gated branch added to the block's tokens, learning from the main loss for every key — and whose probabilities, summed over the
    heads, pick each window's top `global_k` tokens. Costs O(N·N/pool_block) more."""
    pool_block: int = 0
    """Tokens pooled into one query per head (selection="pooled"); a multiple of `window`. 0 = the
    smallest multiple of `window` that is >= 256. The pooled branch and the selection cost
    N/pool_block key dot-products per token (the window costs `window`)."""
    compress_vote: Literal["sum", "max"] = "sum"
    """How a query block's queries vote for summary blocks (selection="compressed"), per head, then
    summed over heads. `sum`: the compressed probabilities summed over the block's queries (each query
    one unit of vote, so one query that needs a far block is outvoted by the others' diffuse mass);
    `max`: each block's largest probability over the block's queries (a single confident query — the
    one that needs the needle — decides; diffuse queries add little)."""
    compress_summary: Literal["mean", "sum"] = "mean"
    """Block summaries (selection="compressed"): `mean` pools each block's keys and values with
    weights summing to 1 (a single salient token is 1/compress_block of the summary's key and value);
    `sum` scales those weights to the block's real-token count (the plain sum at the initial pooling),
    so the salient token keeps its full weight."""
    compress_block: int = 16
    """Tokens per compressed block (selection="compressed"); must divide `window` and `global_k`."""
    score_cap: float = 5.0
    """Bound of the scorer's selection scores: ``s = cap·tanh(raw / cap)`` lies in (−cap, cap), so the
    Gumbel exploration noise (scale `selection_noise`) stays meaningful and the straight-through key
    weight ``exp(s)`` at most e^cap; 0 = unbounded raw scores."""
    scorer_hidden: int = 0
    """Hidden width of the token scorer MLP; 0 means a single linear layer."""
    selection_noise: float = 1.0
    """Temperature of the Gumbel noise added to the token scores when selecting in training
    (Gumbel-top-k sampling, so unselected tokens get explored); 0 = always the plain top-k. Eval and
    cached decoding never add noise."""
    dropout: float = 0.0
    """Dropout on the attention probabilities (training only)."""
    bias: bool = True
    """Whether the q/k/v/o projections have biases (BERT/RoBERTa: yes)."""
    backend: Literal["auto", "blocked", "flex", "sdpa", "reference"] = "auto"
    """Kernel: `auto` picks the best for the device; `blocked` is the pure-PyTorch O(N) kernel."""

    def __post_init__(self) -> None:
        check(self.d_model >= 1, "d_model", f"must be >= 1, got {self.d_model}")
        check(self.n_heads >= 1, "n_heads", f"must be >= 1, got {self.n_heads}")
        check(
            self.d_model % self.n_heads == 0,
            "n_heads",
            f"must divide d_model={self.d_model}, got {self.n_heads}",
        )
        check(self.window >= 1, "window", f"must be >= 1, got {self.window}")
        check(self.global_k >= 0, "global_k", f"must be >= 0, got {self.global_k}")
        check(
            0 <= self.pinned_global <= self.global_k,
            "pinned_global",
            f"must be in [0, global_k={self.global_k}], got {self.pinned_global}",
        )
        check(
            not (self.causal and self.pinned_global),
            "pinned_global",
            "needs causal=false (causal selection is per query block among earlier positions)",
        )
        check(self.score_cap >= 0, "score_cap", f"must be >= 0 (0 = unbounded), got {self.score_cap}")
        check(
            self.selection in ("scorer", "compressed", "pooled"),
            "selection",
            f"must be 'scorer', 'compressed' or 'pooled', got {self.selection!r}",
        )
        check(self.compress_vote in ("sum", "max"), "compress_vote", f"must be 'sum' or 'max', got {self.compress_vote!r}")
        check(
            self.compress_summary in ("mean", "sum"),
            "compress_summary",
            f"must be 'mean' or 'sum', got {self.compress_summary!r}",
        )
        check(self.compress_block >= 1, "compress_block", f"must be >= 1, got {self.compress_block}")
        if self.kind == "hybrid" and self.selection == "compressed":
            check(
                self.window % self.compress_block == 0,
                "compress_block",
                f"must divide window={self.window}, got {self.compress_block}",
            )
            check(
                self.global_k % self.compress_block == 0,
                "global_k",
                f"must be a multiple of compress_block={self.compress_block} with selection='compressed', "
                f"got {self.global_k}",
            )
            check(self.pinned_global == 0, "pinned_global", "needs selection='scorer' (compressed sets are per block)")
            check(
                not self.global_queries_attend_all,
                "global_queries_attend_all",
                "needs selection='scorer' (compressed selection gives one set per query block)",
            )
        check(self.pool_block >= 0, "pool_block", f"must be >= 0 (0 = automatic), got {self.pool_block}")
        if self.kind == "hybrid" and self.selection == "pooled":
            check(
                self.pool_block % self.window == 0,
                "pool_block",
                f"must be a multiple of window={self.window} (0 = automatic), got {self.pool_block}",
            )
            check(
                not self.global_queries_attend_all or (self.pinned_global > 0 and self.combine == "union"),
                "global_queries_attend_all",
                "with selection='pooled' the pinned tokens are the ones that read every token: it needs "
                f"pinned_global >= 1 and combine='union', got pinned_global={self.pinned_global}, combine={self.combine!r}",
            )
        check(self.scorer_hidden >= 0, "scorer_hidden", f"must be >= 0, got {self.scorer_hidden}")
        check(self.selection_noise >= 0, "selection_noise", f"must be >= 0, got {self.selection_noise}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def pooled_block(self) -> int:
        """The pool block in force: `pool_block`, or for 0 the smallest multiple of `window` >= 256."""
        return self.pool_block or self.window * -(-256 // self.window)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads
