"""Configuration of the BERT/RoBERTa-style text encoder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from hybridformer.attention import AttentionConfig
from hybridformer.blocks import BlockConfig
from hybridformer.config import check
from hybridformer.sparsity import SparsityConfig

__all__ = ["TextEncoderConfig"]


@dataclass
class TextEncoderConfig:
    """Shape of a text encoder: embeddings, a stack of transformer blocks, an optional pooler.

    The defaults are BERT-base's shape with hybrid attention; ``TextEncoder.from_pretrained`` reads the
    shape from a checkpoint instead and starts from full attention with gates off.
    """

    vocab_size: int = 30522
    """Number of rows of the word-embedding table."""
    d_model: int = 768
    """Hidden size of every token."""
    n_layers: int = 12
    """Number of transformer blocks."""
    n_heads: int = 12
    """Attention heads per block; must divide d_model."""
    d_ff: int = 3072
    """Inner width of each block's FFN as built; a pruned FFN keeps fewer groups (its `kept_groups`
    buffer, saved with the weights, restores the pruned shape on loading)."""
    max_positions: int = 512
    """Longest input in tokens; the position table has `position_offset + max_positions` rows."""
    position_offset: int = 0
    """Index of the first real token's position row. BERT: 0. RoBERTa: pad_token_id + 1 — real tokens
    are numbered from there and padding tokens take row `position_offset - 1`, as in fairseq."""
    type_vocab_size: int = 2
    """Rows of the token-type (segment) table: 2 for BERT sentence pairs, 1 for RoBERTa."""
    pad_token_id: int = 0
    """Id of the padding token; its word-embedding row starts at zero."""
    layer_norm_eps: float = 1e-12
    """Epsilon of every LayerNorm (BERT: 1e-12, RoBERTa: 1e-5)."""
    dropout: float = 0.1
    """Dropout on the embeddings and on each sublayer's output (training only)."""
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    """FFN activation: `gelu` is the exact erf form (BERT, RoBERTa), `gelu_tanh` the tanh approximation."""
    norm: Literal["post", "pre"] = "post"
    """LayerNorm placement in each block; `pre` adds a final LayerNorm after the stack."""
    pooler: bool = True
    """Whether the encoder has BERT's pooler (dense + tanh on the first token)."""
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    """Self-attention of every block. Its d_model and n_heads are set from this config's; it must not
    be causal (an encoder reads the whole text)."""
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    """FFN gates of every block; `enabled=False` (the default) is the dense FFN."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_positions", "type_vocab_size"):
            value = getattr(self, name)
            check(value >= 1, name, f"must be >= 1, got {value}")
        check(
            self.d_model % self.n_heads == 0, "n_heads", f"must divide d_model={self.d_model}, got {self.n_heads}"
        )
        check(self.position_offset >= 0, "position_offset", f"must be >= 0, got {self.position_offset}")
        check(
            0 <= self.pad_token_id < self.vocab_size,
            "pad_token_id",
            f"must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id}",
        )
        check(self.layer_norm_eps > 0, "layer_norm_eps", f"must be > 0, got {self.layer_norm_eps}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(not self.attention.causal, "attention.causal", "a text encoder attends both ways; must be false")
        if (self.attention.d_model, self.attention.n_heads) != (self.d_model, self.n_heads):
            self.attention = dataclasses.replace(self.attention, d_model=self.d_model, n_heads=self.n_heads)

    @property
    def position_rows(self) -> int:
        """Rows of the position-embedding table."""
        return self.position_offset + self.max_positions

    def block_config(self) -> BlockConfig:
        """The configuration shared by every block of the stack."""
        return BlockConfig(
            d_model=self.d_model,
            d_ff=self.d_ff,
            norm=self.norm,
            layer_norm_eps=self.layer_norm_eps,
            dropout=self.dropout,
            activation=self.activation,
            attention=self.attention,
            sparsity=self.sparsity,
        )
