"""A text encoder with BERT's masked-LM head, returning token scores, never a loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.encoders.hf_bert import convert_hf_mlm_head
from hybridformer.encoders.text import TextEncoder
from hybridformer.encoders.text_checkpoint import load_weights, read_text_checkpoint
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.initialization import allocating, init_children
from hybridformer.models.outputs import MaskedLMOutput
from hybridformer.sparsity import ACTIVATIONS

__all__ = ["MLMHead", "MaskedLMConfig", "TextForMaskedLM"]


@dataclass
class MaskedLMConfig:
    """What a saved masked LM's folder records (its ``config``): the encoder (the head follows from it)."""

    encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    """The text encoder."""


class MLMHead(nn.Module):
    """BERT's masked-LM head: dense + activation + LayerNorm, then scores against the word embeddings.

    The output projection is the encoder's word-embedding matrix (tied, as in BERT and RoBERTa) plus
    a per-token bias, so the head owns no vocab-sized matrix.

    Args:
        d_model: hidden size of the encoder.
        vocab_size: number of tokens.
        activation: a key of ``hybridformer.sparsity.ACTIVATIONS`` (the encoder's FFN activation).
        layer_norm_eps: epsilon of the LayerNorm.
    """

    def __init__(
        self, d_model: int, vocab_size: int, activation: str = "gelu", layer_norm_eps: float = 1e-12
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = ACTIVATIONS[activation]
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.bias = nn.Parameter(self.dense.weight.new_zeros(vocab_size))

    def init_weights(self) -> None:
        """torch's default for the dense layer and the norm; a zero output bias (BERT's)."""
        init_children(self)
        nn.init.zeros_(self.bias)

    def forward(self, hidden_states: Tensor, word_embeddings: Tensor) -> Tensor:
        """Token scores.

        Args:
            hidden_states: (B, N, d) or (M, d) encoder output.
            word_embeddings: (vocab_size, d) the encoder's word-embedding matrix.

        Returns:
            (..., vocab_size) logits.
        """
        x = self.norm(self.activation(self.dense(hidden_states)))
        return F.linear(x, word_embeddings, self.bias)


class TextForMaskedLM(nn.Module):
    """A text encoder with BERT's MLM head, for (continued) pretraining with masked tokens.

    Train it with :class:`~hybridformer.losses.MLMObjective`.

    Args:
        encoder: the text encoder.
    """

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__()
        cfg = encoder.config
        self.encoder = encoder
        with allocating():
            self.head = MLMHead(cfg.d_model, cfg.vocab_size, cfg.activation, cfg.layer_norm_eps)
        self.head.init_weights()

    def init_weights(self) -> None:
        """Initialise the encoder, then the head (see :mod:`hybridformer.initialization`)."""
        self.encoder.init_weights()
        self.head.init_weights()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> MaskedLMOutput:
        """Score tokens against the vocabulary.

        Args:
            input_ids: LongTensor (B, N), with masked positions already replaced (see
                ``hybridformer.losses.mlm``).
            attention_mask: (B, N) bool or 0/1, True/1 = real token; None = no padding.
            token_type_ids: LongTensor (B, N) or None.
            positions: bool (B, N), True at the M positions to score (the MLM targets); None scores all.

        Returns:
            MaskedLMOutput with logits (B, N, V), or (M, V) for the selected positions in row-major order.
        """
        enc = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        hidden = enc.last_hidden_state
        if positions is not None:
            if positions.shape != input_ids.shape or positions.dtype != torch.bool:
                raise ValueError(
                    f"positions: expected a bool tensor of shape {tuple(input_ids.shape)} like input_ids, got "
                    f"shape {tuple(positions.shape)} dtype {positions.dtype}"
                )
            hidden = hidden[positions]  # (M, d)
        logits = self.head(hidden, self.encoder.embeddings.word_embeddings.weight)
        return MaskedLMOutput(logits=logits, aux_loss=enc.aux_loss, gate_stats=enc.gate_stats)

    @property
    def config(self) -> MaskedLMConfig:
        """The model's config (what its folder records)."""
        return MaskedLMConfig(self.encoder.config)

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> TextForMaskedLM:
        """Load from a folder of ours or a Hugging Face one; the MLM head is loaded when the folder has one
        (``BertForMaskedLM``/``RobertaForMaskedLM`` or our ``TextForMaskedLM``), else freshly initialised.
        Overrides as in :meth:`TextEncoder.from_pretrained`."""
        checkpoint = read_text_checkpoint(path)
        model = cls(TextEncoder.from_checkpoint(checkpoint, **overrides))
        if checkpoint.meta.get("architecture") == "TextForMaskedLM":
            head = {k[len("head.") :]: v for k, v in checkpoint.others.items() if k.startswith("head.")}
        elif not checkpoint.meta:
            head = convert_hf_mlm_head(checkpoint.others) or {}
        else:
            head = {}
        if head:
            load_weights(model.head, head, set(model.head.state_dict()), checkpoint.source)
        return model
