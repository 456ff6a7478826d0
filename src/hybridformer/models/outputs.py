"""Typed outputs of the text models: logits and the encoder's auxiliary terms, never a task loss."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hybridformer.sparsity import GateStats

__all__ = ["ClassifierOutput", "MaskedLMOutput"]


@dataclass
class ClassifierOutput:
    """What :class:`~hybridformer.models.TextClassifier` returns."""

    logits: Tensor
    """(B, num_labels) unnormalised class scores."""
    aux_loss: Tensor
    """Scalar auxiliary term of the encoder (the FFN gates' rate loss; 0 when gates are off), for the
    objective to add to its task loss."""
    gate_stats: list[GateStats | None]
    """Per encoder block, the FFN gates' statistics (None when gates are off)."""


@dataclass
class MaskedLMOutput:
    """What :class:`~hybridformer.models.TextForMaskedLM` returns."""

    logits: Tensor
    """Token scores: (B, N, vocab_size), or (M, vocab_size) for the M positions selected by
    ``positions`` (row-major order)."""
    aux_loss: Tensor
    """Scalar auxiliary term of the encoder (FFN gates' rate loss; 0 when gates are off)."""
    gate_stats: list[GateStats | None]
    """Per encoder block, the FFN gates' statistics (None when gates are off)."""
