"""Configuration of one attention layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hybridformer.config import check


@dataclass
class AttentionConfig:
    """How one self-attention layer attends.

    `kind="full"` is ordinary dense attention (what a pretrained BERT/RoBERTa checkpoint was trained
    with); `kind="hybrid"` is local windows plus a learned global top-k (SPEC §2).
    """

    d_model: int = 512
    """Hidden size of the tokens entering the layer."""
    n_heads: int = 8
    """Number of attention heads; must divide d_model."""
    kind: Literal["full", "hybrid"] = "hybrid"
    """Dense attention over all keys, or hybrid local + global top-k attention."""
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
    """Selected tokens also attend to every key (Longformer-style global queries)."""
    pinned_global: int = 0
    """The first `pinned_global` positions (e.g. [CLS]) are always among the selected tokens, the
    scorer picking the other global_k − pinned_global (Longformer's recipe for classification:
    with `global_queries_attend_all` the [CLS] query then reads the whole sequence). Non-causal only."""
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
        check(self.scorer_hidden >= 0, "scorer_hidden", f"must be >= 0, got {self.scorer_hidden}")
        check(self.selection_noise >= 0, "selection_noise", f"must be >= 0, got {self.selection_noise}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads
