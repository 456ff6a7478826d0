"""Sequence classification: cross-entropy on class labels, plus the model's auxiliary (gate) terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses.output import LossOutput, model_inputs, require_labels
from hybridformer.validation import check_range

__all__ = ["ClassificationObjective", "check_class_labels", "classification_loss"]


def check_class_labels(labels: Tensor, logits: Tensor) -> None:
    """Shape and dtype of ``labels`` against (B, C) ``logits``: metadata only, no host sync.

    Raises:
        ValueError: labels are not an integer (B,) tensor.
    """
    batch = logits.shape[0]
    if labels.shape != (batch,) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(
            f"labels: expected an integer tensor of shape ({batch},), got shape {tuple(labels.shape)} "
            f"dtype {labels.dtype}"
        )


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of (B, C) ``logits`` against (B,) class indices (in float32 at least).

    Raises:
        ValueError: labels of the wrong shape or dtype, or (CPU) outside [0, C).
    """
    check_class_labels(labels, logits)
    check_range(labels, "labels", logits.shape[-1], "num_labels")
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels)


class ClassificationObjective(nn.Module):
    """``loss = cross_entropy(model(**inputs).logits, labels) + output.aux_loss``.

    Metrics: ``cross_entropy``, ``aux_loss`` (the gates' rate term) and ``accuracy`` of the batch.
    """

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        labels = require_labels(batch, "ClassificationObjective")
        out = model(**model_inputs(batch))
        ce = classification_loss(out.logits, labels)
        with torch.no_grad():
            accuracy = (out.logits.argmax(-1) == labels).float().mean()
        return LossOutput(
            loss=ce + out.aux_loss,
            metrics={"cross_entropy": ce.detach(), "aux_loss": out.aux_loss.detach(), "accuracy": accuracy},
        )
