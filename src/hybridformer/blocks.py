"""The transformer block: hybrid self-attention and a (optionally gated) FFN, each a residual sublayer.

One block serves encoders (bidirectional attention) and, later, decoders (causal attention plus a
cross-attention sublayer). Every sublayer goes through the same two steps, :meth:`TransformerBlock._in`
(the LayerNorm before the sublayer when pre-LN) and :meth:`TransformerBlock._out` (dropout, residual
add, and the LayerNorm after it when post-LN), so a cross-attention sublayer is one more
``x = self._out(x, cross(self._in(x, norm)), norm)`` line between the two that exist, not a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from torch import Tensor, nn

from hybridformer.attention.config import AttentionConfig
from hybridformer.attention.hybrid import HybridAttention
from hybridformer.config import check
from hybridformer.initialization import init_children
from hybridformer.sparsity import GatedFFN, GateStats, SparsityConfig

if TYPE_CHECKING:
    from hybridformer.attention.cache import KVCache

__all__ = ["BlockConfig", "BlockOutput", "TransformerBlock"]


@dataclass
class BlockConfig:
    """Shape and wiring of one transformer block."""

    d_model: int = 512
    """Hidden size of the tokens entering and leaving the block."""
    d_ff: int = 2048
    """Inner width of the feed-forward sublayer."""
    norm: Literal["post", "pre"] = "post"
    """`post`: LayerNorm after each residual add (BERT/RoBERTa); `pre`: before each sublayer (GPT-2)."""
    layer_norm_eps: float = 1e-12
    """Epsilon of the LayerNorms (BERT: 1e-12, RoBERTa: 1e-5)."""
    dropout: float = 0.1
    """Dropout on each sublayer's output before the residual add (training only)."""
    activation: str = "gelu"
    """FFN activation, passed to GatedFFN (`gelu` is the exact erf form BERT uses)."""
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    """Self-attention of the block; its d_model must equal the block's."""
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    """Gates of the FFN; `enabled=False` gives exactly the dense FFN."""

    def __post_init__(self) -> None:
        check(self.d_model >= 1, "d_model", f"must be >= 1, got {self.d_model}")
        check(self.d_ff >= 1, "d_ff", f"must be >= 1, got {self.d_ff}")
        check(self.layer_norm_eps > 0, "layer_norm_eps", f"must be > 0, got {self.layer_norm_eps}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(
            self.attention.d_model == self.d_model,
            "attention.d_model",
            f"must equal the block's d_model={self.d_model}, got {self.attention.d_model}",
        )


@dataclass
class BlockOutput:
    """What one block returns."""

    hidden_states: Tensor
    """(B, N, d) the block's output tokens."""
    aux_loss: Tensor
    """Scalar auxiliary loss of the block (the FFN gates' target-rate loss; 0 when gates are off)."""
    gate_stats: GateStats | None
    """Statistics of the FFN gates (active fraction, entropy), None when gates are off."""
    global_indices: Tensor | None
    """LongTensor of the tokens the attention scorer selected, None for full attention."""


class TransformerBlock(nn.Module):
    """Self-attention sublayer then FFN sublayer, each with dropout, a residual add and a LayerNorm.

    Post-LN (``norm="post"``): ``x = LN(x + drop(sublayer(x)))`` — the BERT/RoBERTa layer, so a
    converted checkpoint reproduces its outputs. Pre-LN (``norm="pre"``): ``x = x + drop(sublayer(LN(x)))``;
    the model holding a pre-LN stack applies a final LayerNorm after it.

    Args:
        config: the block's shape, attention and FFN-gate settings.
    """

    def __init__(self, config: BlockConfig) -> None:
        super().__init__()
        self.config = config
        self.attention = HybridAttention(config.attention)
        self.attention_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = GatedFFN(config.d_model, config.d_ff, config.sparsity, activation=config.activation)
        self.ffn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def init_weights(self) -> None:
        """Initialise the sublayers, each as it defines (see :mod:`hybridformer.initialization`)."""
        init_children(self)

    def _in(self, x: Tensor, norm: nn.LayerNorm) -> Tensor:
        """The sublayer's input: normalised first when pre-LN."""
        return norm(x) if self.config.norm == "pre" else x

    def _out(self, x: Tensor, update: Tensor, norm: nn.LayerNorm) -> Tensor:
        """Residual add of the sublayer's output, normalised after when post-LN."""
        x = x + self.dropout(update)
        return norm(x) if self.config.norm == "post" else x

    def forward(
        self,
        hidden_states: Tensor,
        key_padding_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> BlockOutput:
        """Run the block.

        Args:
            hidden_states: (B, N, d) input tokens.
            key_padding_mask: bool (B, N), True = real token; None = no padding. Padded keys are never
                attended to and padded tokens do not count in the gates' statistics.
            cache: the attention's KV cache for step-by-step decoding (decoders); None for encoders.

        Returns:
            BlockOutput with the (B, N, d) output tokens, the gates' aux loss and statistics, and the
            selected global tokens.
        """
        x = hidden_states
        attn = self.attention(
            self._in(x, self.attention_norm), key_padding_mask=key_padding_mask, cache=cache
        )
        x = self._out(x, attn.hidden_states, self.attention_norm)
        ffn = self.ffn(self._in(x, self.ffn_norm), key_padding_mask=key_padding_mask)
        x = self._out(x, ffn.hidden_states, self.ffn_norm)
        return BlockOutput(
            hidden_states=x, aux_loss=ffn.aux_loss, gate_stats=ffn.stats, global_indices=attn.global_indices
        )
