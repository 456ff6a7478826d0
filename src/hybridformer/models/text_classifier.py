"""A text encoder with a sequence-classification head (RoBERTa's), returning logits, never a loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from hybridformer.encoders.text import TextEncoder
from hybridformer.encoders.text_checkpoint import TextCheckpoint, load_weights, read_text_checkpoint
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.initialization import allocating, init_children
from hybridformer.models.outputs import ClassifierOutput

__all__ = ["SequenceClassificationHead", "TextClassifier", "TextClassifierConfig"]


@dataclass
class TextClassifierConfig:
    """What a saved classifier's folder records (its ``config``): the encoder and the head."""

    encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    """The text encoder."""
    num_labels: int = 2
    """Number of classes."""
    pooling: Literal["cls", "mean"] = "cls"
    """Head input: the first token or the mean of the real tokens."""
    dropout: float = 0.1
    """Head dropout."""
    label_names: list[str] | None = None
    """Class names in label order."""


class SequenceClassificationHead(nn.Module):
    """Pool the tokens, then dense + tanh, dropout, linear to class scores (RoBERTa's head).

    Args:
        d_model: hidden size of the encoder.
        num_labels: number of classes (>= 2), or 1 for a regression head (one real value, e.g. STS-B's score).
        dropout: dropout before the dense layer and before the output layer (training only).
        pooling: ``cls`` reads the first token; ``mean`` averages the real (non-padding) tokens.
    """

    def __init__(
        self, d_model: int, num_labels: int, dropout: float = 0.1, pooling: Literal["cls", "mean"] = "cls"
    ) -> None:
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels: a head needs at least 1 output (1: regression, 2+: classes), got {num_labels}")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling: must be 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.dense = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None) -> Tensor:
        """Class scores.

        Args:
            hidden_states: (B, N, d) encoder output.
            attention_mask: bool (B, N), True = real token; None = no padding.

        Returns:
            (B, num_labels) logits.
        """
        if self.pooling == "cls":
            pooled = hidden_states[:, 0]  # (B, d)
        elif attention_mask is None:
            pooled = hidden_states.mean(1)  # (B, d)
        else:
            weights = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # (B, N, 1)
            pooled = (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, d)
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(x))


class TextClassifier(nn.Module):
    """A text encoder with a sequence-classification head; pairs of texts go in with token_type_ids.

    When the encoder has a pretrained BERT pooler and ``pooling="cls"``, the head's dense layer starts
    from the pooler's weights, so the head begins as BERT's own classifier does. Train it with
    :class:`~hybridformer.losses.ClassificationObjective`.

    Args:
        encoder: the text encoder (e.g. ``TextEncoder.from_pretrained(path)``).
        num_labels: number of classes (>= 2), or 1 for a regression head (one real value, e.g. STS-B's score).
        dropout: head dropout; None = the encoder's dropout.
        pooling: ``cls`` (first token) or ``mean`` (average of real tokens).
        label_names: optional class names in label order, saved with the model for evaluation.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        num_labels: int,
        *,
        dropout: float | None = None,
        pooling: Literal["cls", "mean"] = "cls",
        label_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if label_names is not None and len(label_names) != num_labels:
            raise ValueError(f"label_names: expected {num_labels} names (num_labels), got {len(label_names)}")
        self.encoder = encoder
        self.num_labels = num_labels
        self.label_names = list(label_names) if label_names is not None else None
        self.dropout = encoder.config.dropout if dropout is None else dropout
        with allocating():
            self.head = SequenceClassificationHead(encoder.config.d_model, num_labels, self.dropout, pooling)
        self._init_head()

    def _init_head(self) -> None:
        init_children(self.head)
        if self.encoder.pooler is not None and self.head.pooling == "cls":
            with torch.no_grad():
                self.head.dense.weight.copy_(self.encoder.pooler.dense.weight)
                self.head.dense.bias.copy_(self.encoder.pooler.dense.bias)

    def init_weights(self) -> None:
        """Initialise the encoder, then the head (see :mod:`hybridformer.initialization`)."""
        self.encoder.init_weights()
        self._init_head()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> ClassifierOutput:
        """Classify a batch.

        Args:
            input_ids: LongTensor (B, N).
            attention_mask: (B, N) bool or 0/1, True/1 = real token; None = no padding.
            token_type_ids: LongTensor (B, N), 0 for the first text and 1 for the second of a pair.

        Returns:
            ClassifierOutput (logits and the encoder's auxiliary term).
        """
        enc = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        mask = None if attention_mask is None else attention_mask.bool()
        logits = self.head(enc.last_hidden_state, mask)
        return ClassifierOutput(logits=logits, aux_loss=enc.aux_loss, gate_stats=enc.gate_stats)

    @property
    def config(self) -> TextClassifierConfig:
        """The classifier's config (what its folder records)."""
        return TextClassifierConfig(self.encoder.config, self.num_labels, self.head.pooling, self.dropout,
                                    self.label_names)

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> TextClassifier:
        """Reload a float classifier saved by ``hybridformer.registry.save_model``; overrides as in
        TextEncoder's. ``hybridformer.registry.load_model`` loads its int8 form too."""
        return cls.from_checkpoint(read_text_checkpoint(path), **overrides)

    @classmethod
    def from_checkpoint(cls, checkpoint: TextCheckpoint, **overrides: Any) -> TextClassifier:
        """Build the classifier of an already-read folder (see :meth:`from_pretrained`)."""
        if checkpoint.meta.get("architecture") != "TextClassifier":
            raise ValueError(
                f"{checkpoint.source}: holds a {checkpoint.meta.get('architecture', 'Hugging Face')} model, not a "
                f"TextClassifier; build one with TextClassifier(TextEncoder.from_pretrained(path), num_labels)"
            )
        meta = checkpoint.meta
        if "quantization" in meta:
            raise ValueError(f"{checkpoint.source}: an int8 model; load it with hybridformer.registry.load_model")
        model = cls(
            TextEncoder.from_checkpoint(checkpoint, **overrides),
            meta["num_labels"],
            dropout=meta["dropout"],
            pooling=meta["pooling"],
            label_names=meta["label_names"],
        )
        head = {k[len("head.") :]: v for k, v in checkpoint.others.items() if k.startswith("head.")}
        load_weights(model.head, head, set(model.head.state_dict()), checkpoint.source)
        return model
