"""The joint autoregressive decoder block: causal self-attention, gated cross-modal attention, FFN.

Pre-LN, each sublayer a residual (GPT-2 / Flamingo style)::

    x = x + drop(self_attention(LN(x)))          # HybridAttention, causal, kind hybrid or full
    x = x + drop(cross_attention(LN(x), kv))      # tanh-gated, 0 at init; skipped without context
    x = x + drop(ffn(LN(x)))                      # GatedFFN, optionally gated sparse

The self-attention keeps a :class:`~hybridformer.attention.KVCache` per sequence for step-by-step
decoding; the cross-attention's keys/values (:class:`~hybridformer.fusion.CrossModalKV`) are
computed once per input by the decoder and passed to every call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from hybridformer.attention import AttentionConfig, HybridAttention, KVCache
from hybridformer.config import check
from hybridformer.fusion.batched_decode import (
    FusedProjection, RingCache, StepLayout, layer_norm_of, linear_of, ring_attention,
)
from hybridformer.fusion.cross_modal import CrossModalAttention, CrossModalConfig, CrossModalKV, CrossStep
from hybridformer.initialization import allocating, init_children
from hybridformer.sparsity import GatedFFN, GateStats, SparsityConfig

__all__ = ["DECODER_SELECTION", "DecoderConfig", "DecoderBlock", "DecoderBlockOutput"]


DECODER_SELECTION = "scorer"
"""The decoders' global selection. Not the pooled default: the server decodes many sequences in one
batch over constant-size ring caches (``fusion/batched_decode.py``), which the scorer's causal
selection fits, while the pooled branch reads every earlier key, so pooled layers decode through the
per-sequence cache. Captions and answers are shorter than a window anyway."""


def _causal_attention() -> AttentionConfig:
    return AttentionConfig(causal=True, selection=DECODER_SELECTION)


@dataclass
class DecoderConfig:
    """Shape of the joint decoder: token and position embeddings, blocks, tied LM head."""

    vocab_size: int = 30522
    """Tokens of the vocabulary (the text encoder's tokenizer)."""
    d_model: int = 512
    """Hidden size of the decoder tokens."""
    n_layers: int = 6
    """Number of decoder blocks."""
    n_heads: int = 8
    """Heads of the self- and cross-attention; must divide d_model."""
    d_ff: int = 2048
    """Inner width of each block's FFN."""
    max_positions: int = 1024
    """Longest sequence (prompt + generated tokens) the position table covers."""
    layer_norm_eps: float = 1e-5
    """Epsilon of every LayerNorm."""
    dropout: float = 0.1
    """Dropout on the embeddings and each sublayer's output (training only)."""
    activation: Literal["gelu", "gelu_tanh", "relu", "silu"] = "gelu"
    """FFN activation."""
    attention: AttentionConfig = field(default_factory=_causal_attention)
    """Self-attention of every block; d_model and n_heads are set from this config's, and it is always
    causal (causal=True is set here). kind `hybrid` (local windows + learned global top-k) or `full`."""
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    """FFN gates of every block; `enabled=False` (the default) is the dense FFN."""
    text_dim: int = 0
    """Width of the text-context tokens the cross-attention reads; 0 = no text modality."""
    image_dim: int = 0
    """Width of the image tokens the cross-attention reads; 0 = no image modality."""
    video_dim: int = 0
    """Width of the video tokens the cross-attention reads; 0 = no video modality. With all three 0 the
    blocks have no cross-attention (a text-only decoder)."""
    bos_token_id: int = 101
    """Token that starts every sequence ([CLS] of the BERT tokenizer)."""
    eos_token_id: int = 102
    """Token that ends a generated sequence ([SEP] of the BERT tokenizer)."""
    pad_token_id: int = 0
    """Token that fills finished or shorter sequences in padded outputs ([PAD])."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_positions"):
            check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        check(self.d_model % self.n_heads == 0, "n_heads", f"must divide d_model={self.d_model}, got {self.n_heads}")
        check(self.layer_norm_eps > 0, "layer_norm_eps", f"must be > 0, got {self.layer_norm_eps}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            check(0 <= value < self.vocab_size, name, f"must be in [0, vocab_size={self.vocab_size}), got {value}")
        check(not self.attention.pinned_global, "attention.pinned_global", "must be 0 in a causal decoder")
        wanted = (self.d_model, self.n_heads, True)
        if (self.attention.d_model, self.attention.n_heads, self.attention.causal) != wanted:
            self.attention = dataclasses.replace(self.attention, d_model=self.d_model, n_heads=self.n_heads, causal=True)
        self.cross_config()  # validates the modality widths

    def cross_config(self) -> CrossModalConfig:
        """The cross-attention shape shared by every block."""
        return CrossModalConfig(
            d_model=self.d_model, n_heads=self.n_heads, text_dim=self.text_dim, image_dim=self.image_dim,
            video_dim=self.video_dim, dropout=self.attention.dropout,
        )

    @property
    def has_context(self) -> bool:
        """Whether the blocks have a cross-attention (some modality width > 0)."""
        return bool(self.cross_config().dims)


@dataclass
class DecoderBlockOutput:
    """What one decoder block returns."""

    hidden_states: Tensor
    """(B, N, d_model) the block's output tokens."""
    aux_loss: Tensor
    """Scalar FFN-gate auxiliary loss (0 when gates are off)."""
    gate_stats: GateStats | None
    """FFN gate statistics, None when gates are off."""


class DecoderBlock(nn.Module):
    """Causal hybrid self-attention + gated cross-modal attention + FFN, pre-LN residuals.

    Args:
        config: the decoder's :class:`DecoderConfig`.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        eps = config.layer_norm_eps
        with allocating():
            self.self_attention_norm = nn.LayerNorm(config.d_model, eps=eps)
            self.self_attention = HybridAttention(config.attention)
            self.cross_attention_norm = nn.LayerNorm(config.d_model, eps=eps) if config.has_context else None
            self.cross_attention = CrossModalAttention(config.cross_config()) if config.has_context else None
            self.ffn_norm = nn.LayerNorm(config.d_model, eps=eps)
            self.ffn = GatedFFN(config.d_model, config.d_ff, config.sparsity, activation=config.activation)
            self.dropout = nn.Dropout(config.dropout)
        self.init_weights()

    def init_weights(self) -> None:
        """Every sublayer's own init, in order (the cross-attention gate at 0)."""
        init_children(self)

    def forward(
        self,
        hidden_states: Tensor,
        key_padding_mask: Tensor | None = None,
        kv: CrossModalKV | None = None,
        caches: Sequence[KVCache] | None = None,
    ) -> DecoderBlockOutput:
        """Run the block.

        Args:
            hidden_states: (B, N, d_model). With caches: the new tokens only.
            key_padding_mask: bool (B, N), True = real token (right padding in training); None = all real.
            kv: this block's cross-attention keys/values for the B examples, or None (no context).
            caches: one self-attention :class:`KVCache` per sequence (B of them), for step-by-step
                decoding; sequences may be at different lengths, each attends over its own cache.

        Returns:
            :class:`DecoderBlockOutput`.
        """
        x = hidden_states
        h = self.self_attention_norm(x)
        if caches is None:
            attn = self.self_attention(h, key_padding_mask=key_padding_mask).hidden_states
        else:
            if len(caches) != x.shape[0]:
                raise ValueError(f"caches: expected one per sequence ({x.shape[0]}), got {len(caches)}")
            rows = [
                self.self_attention(
                    h[i : i + 1],
                    key_padding_mask=None if key_padding_mask is None else key_padding_mask[i : i + 1],
                    cache=cache,
                ).hidden_states
                for i, cache in enumerate(caches)
            ]
            attn = torch.cat(rows, dim=0)  # (B, N, d_model)
        x = x + self.dropout(attn)
        if self.cross_attention is not None and kv is not None:
            x = x + self.dropout(self.cross_attention(self.cross_attention_norm(x), kv))
        ffn = self.ffn(self.ffn_norm(x), key_padding_mask=key_padding_mask)
        x = x + self.dropout(ffn.hidden_states)
        return DecoderBlockOutput(hidden_states=x, aux_loss=ffn.aux_loss, gate_stats=ffn.stats)

    def decode(
        self, x: Tensor, ring: RingCache, projection: FusedProjection, step: StepLayout, context: CrossStep | None
    ) -> Tensor:
        """One decode step of B sequences over their :class:`RingCache` (``fusion/batched_decode.py``).

        Args:
            x: (B, d_model) the new tokens' hidden states (2-D: one token per sequence).
            ring: this block's self-attention buffers (updated in place).
            projection: the self-attention's fused q/k/v projection.
            step: the positions and visibility shared by every block.
            context: the prepared cross-attention context, or None (no row has context).

        Returns:
            (B, d_model) the block's output.
        """
        # Functional calls on the modules' own weights: at d_model 128 a module call's Python costs
        # as much as its matmul. Dropout only in training (it is the identity in eval).
        drop = self.dropout if self.training else _identity
        h = ring_attention(self.self_attention, projection, layer_norm_of(self.self_attention_norm, x), ring, step)
        x = x + drop(h)
        if context is not None:
            x = x + drop(self.cross_attention.attend_step(layer_norm_of(self.cross_attention_norm, x), context))
        ffn, h = self.ffn, layer_norm_of(self.ffn_norm, x)
        if ffn.gate is None:
            out = linear_of(ffn.fc_out, ffn.act(linear_of(ffn.fc_in, h)))
        else:
            out = ffn(h[:, None]).hidden_states[:, 0]
        return x + drop(out)


def _identity(x: Tensor) -> Tensor:
    return x
