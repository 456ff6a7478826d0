"""Text task heads and the models that put them on a :class:`~hybridformer.encoders.TextEncoder`.

Models take keyword batches (``model(input_ids=..., attention_mask=..., token_type_ids=..., labels=...)``)
so a generic trainer can call ``model(**batch)``, and return typed outputs whose ``loss`` already
includes the encoder's auxiliary (FFN gate) loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.encoders.hf_bert import convert_hf_mlm_head
from hybridformer.encoders.text import TextEncoder
from hybridformer.encoders.text_checkpoint import (
    TextCheckpoint,
    load_weights,
    read_text_checkpoint,
    write_text_checkpoint,
)
from hybridformer.losses.mlm import IGNORE_INDEX, mlm_loss
from hybridformer.sparsity import ACTIVATIONS, GateStats

__all__ = [
    "ClassifierOutput",
    "MaskedLMOutput",
    "MLMHead",
    "SequenceClassificationHead",
    "TextClassifier",
    "TextForMaskedLM",
]

@dataclass
class ClassifierOutput:
    """What :class:`TextClassifier` returns."""

    loss: Tensor | None
    """Scalar cross-entropy + encoder aux loss; None without labels."""
    logits: Tensor
    """(B, num_labels) unnormalised class scores."""
    aux_loss: Tensor
    """Scalar encoder auxiliary (FFN gate) loss, already included in `loss`."""
    gate_stats: list[GateStats | None]
    """Per encoder block, the FFN gates' statistics (None when gates are off)."""


@dataclass
class MaskedLMOutput:
    """What :class:`TextForMaskedLM` returns."""

    loss: Tensor | None
    """Scalar MLM cross-entropy over the masked tokens + encoder aux loss; None without labels."""
    logits: Tensor
    """Token scores: (B, N, vocab_size) without labels; with labels (M, vocab_size) for the M target
    positions only (labels != -100, row-major order), since scoring every token against the vocabulary
    would cost more than the encoder itself."""
    targets: Tensor | None
    """(M,) the labels of the rows of `logits` when labels were given, else None."""
    aux_loss: Tensor
    """Scalar encoder auxiliary (FFN gate) loss, already included in `loss`."""
    gate_stats: list[GateStats | None]
    """Per encoder block, the FFN gates' statistics (None when gates are off)."""


class SequenceClassificationHead(nn.Module):
    """Pool the tokens, then dense + tanh, dropout, linear to class scores (RoBERTa's head).

    Args:
        d_model: hidden size of the encoder.
        num_labels: number of classes (>= 2).
        dropout: dropout before the dense layer and before the output layer (training only).
        pooling: ``cls`` reads the first token; ``mean`` averages the real (non-padding) tokens.
    """

    def __init__(
        self, d_model: int, num_labels: int, dropout: float = 0.1, pooling: Literal["cls", "mean"] = "cls"
    ) -> None:
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"num_labels: a classifier needs at least 2 classes, got {num_labels}")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling: must be 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.dense = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
        """Class scores.

        Args:
            hidden_states: (B, N, d) encoder output.
            attention_mask: bool (B, N), True = real token.

        Returns:
            (B, num_labels) logits.
        """
        if self.pooling == "cls":
            pooled = hidden_states[:, 0]  # (B, d)
        else:
            weights = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # (B, N, 1)
            pooled = (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, d)
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(x))


class TextClassifier(nn.Module):
    """A text encoder with a sequence-classification head; pairs of texts go in with token_type_ids.

    When the encoder has a pretrained BERT pooler and ``pooling="cls"``, the head's dense layer starts
    from the pooler's weights, so the head begins as BERT's own classifier does.

    Args:
        encoder: the text encoder (e.g. ``TextEncoder.from_pretrained(path)``).
        num_labels: number of classes (>= 2).
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
        self.head = SequenceClassificationHead(encoder.config.d_model, num_labels, self.dropout, pooling)
        if encoder.pooler is not None and pooling == "cls":
            self.head.dense.load_state_dict(encoder.pooler.dense.state_dict())

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> ClassifierOutput:
        """Classify a batch.

        Args:
            input_ids: LongTensor (B, N).
            attention_mask: (B, N) bool or 0/1, True/1 = real token; None = no padding.
            token_type_ids: LongTensor (B, N), 0 for the first text and 1 for the second of a pair.
            labels: LongTensor (B,) of class indices in [0, num_labels); None = no loss.

        Returns:
            ClassifierOutput; ``loss`` = mean cross-entropy + the encoder's aux loss.
        """
        enc = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        logits = self.head(enc.last_hidden_state, mask)
        loss = None
        if labels is not None:
            self._check_labels(labels, input_ids.shape[0])
            loss = F.cross_entropy(logits, labels) + enc.aux_loss
        return ClassifierOutput(loss=loss, logits=logits, aux_loss=enc.aux_loss, gate_stats=enc.gate_stats)

    def _check_labels(self, labels: Tensor, batch: int) -> None:
        if labels.shape != (batch,) or labels.dtype.is_floating_point:
            raise ValueError(
                f"labels: expected an integer tensor of shape ({batch},), got shape {tuple(labels.shape)} "
                f"dtype {labels.dtype}"
            )
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_labels:
            raise ValueError(f"labels: must be in [0, num_labels={self.num_labels}), got min {low} max {high}")

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the classifier (encoder, head, label names) to the folder ``path``."""
        extra = {
            "num_labels": self.num_labels,
            "pooling": self.head.pooling,
            "dropout": self.dropout,
            "label_names": self.label_names,
        }
        return write_text_checkpoint(
            self, path, architecture="TextClassifier", config=self.encoder.config,
            encoder_prefix="encoder.", extra=extra,
        )

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> TextClassifier:
        """Reload a classifier written by :meth:`save_pretrained`; overrides as in TextEncoder's.

        A folder written by ``hybridformer.deploy.save_quantized`` loads as that int8 classifier."""
        from hybridformer.deploy.int8_format import is_quantized_folder, load_quantized  # deploy builds on models

        if is_quantized_folder(path):
            return load_quantized(path, **overrides)
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
        self.bias = nn.Parameter(torch.zeros(vocab_size))

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

    Args:
        encoder: the text encoder.
    """

    def __init__(self, encoder: TextEncoder) -> None:
        super().__init__()
        cfg = encoder.config
        self.encoder = encoder
        self.head = MLMHead(cfg.d_model, cfg.vocab_size, cfg.activation, cfg.layer_norm_eps)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> MaskedLMOutput:
        """Score every token against the vocabulary.

        Args:
            input_ids: LongTensor (B, N), with masked positions already replaced (see
                ``hybridformer.losses.mlm``).
            attention_mask: (B, N) bool or 0/1, True/1 = real token; None = no padding.
            token_type_ids: LongTensor (B, N) or None.
            labels: LongTensor (B, N): the original id at masked positions, -100 elsewhere; None = no loss.

        Returns:
            MaskedLMOutput; ``loss`` = MLM cross-entropy over masked tokens + the encoder's aux loss.
            With labels, only the target positions are scored (``logits`` (M, V), ``targets`` (M,)).
        """
        enc = self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        hidden = enc.last_hidden_state
        words = self.encoder.embeddings.word_embeddings.weight
        if labels is None:
            logits = self.head(hidden, words)  # (B, N, V)
            return MaskedLMOutput(
                loss=None, logits=logits, targets=None, aux_loss=enc.aux_loss, gate_stats=enc.gate_stats
            )
        if labels.shape != input_ids.shape:
            raise ValueError(
                f"labels: expected shape {tuple(input_ids.shape)} like input_ids, got {tuple(labels.shape)}"
            )
        is_target = labels != IGNORE_INDEX  # (B, N)
        logits = self.head(hidden[is_target], words)  # (M, V)
        targets = labels[is_target]  # (M,)
        loss = mlm_loss(logits, targets) + enc.aux_loss
        return MaskedLMOutput(
            loss=loss, logits=logits, targets=targets, aux_loss=enc.aux_loss, gate_stats=enc.gate_stats
        )

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model (encoder and MLM head) to the folder ``path``."""
        return write_text_checkpoint(
            self, path, architecture="TextForMaskedLM", config=self.encoder.config,
            encoder_prefix="encoder.", extra={},
        )

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
