"""Typed outputs of the models: logits, embeddings and auxiliary terms, never a task loss."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hybridformer.sparsity import GateStats

__all__ = ["ClassifierOutput", "MaskedLMOutput", "MultimodalOutput", "ContrastiveOutput"]


@dataclass
class ClassifierOutput:
    """What :class:`~hybridformer.models.TextClassifier` returns (and the multimodal model's text and
    image classification heads)."""

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


@dataclass
class MultimodalOutput:
    """What a joint-decoder pass of :class:`~hybridformer.models.MultimodalModel` returns."""

    logits: Tensor
    """(B, N, vocab_size) next-token scores of every decoder position (captioning, answers)."""
    fused: Tensor
    """(B, d_model) the decoder state at each row's last real token: having read the whole text and,
    through cross-attention, every present modality, it is the fused representation the matching and
    answer heads read."""
    itm_logits: Tensor
    """(B, 2) image-text matching scores (index 1 = the text matches the context)."""
    answer_logits: Tensor | None
    """(B, num_answers) scores over the VQA answer vocabulary; None without an answer head."""
    aux_loss: Tensor
    """Scalar sum of the FFN gates' auxiliary losses (decoder and text encoder; 0 when gates are off)."""
    gate_stats: list[GateStats | None]
    """Per decoder block, the FFN gates' statistics (None when gates are off)."""


@dataclass
class ContrastiveOutput:
    """Embeddings for image-text contrastive learning (ITC), L2-normalised."""

    text_embeddings: Tensor | None
    """(B, embed_dim) unit-norm text embeddings; None when no text was given."""
    image_embeddings: Tensor | None
    """(B, embed_dim) unit-norm image embeddings; None when no images were given."""
