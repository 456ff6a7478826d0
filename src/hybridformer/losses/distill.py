"""Knowledge distillation (Hinton et al., 2015): a student matches a teacher's softened predictions.

``distillation_loss(s, t, T) = T**2 * mean_b KL(softmax(t_b / T) || softmax(s_b / T))``. The T**2
factor keeps the gradient's scale independent of the temperature, so the loss mixes with a
cross-entropy on labels without retuning its weight. The teacher's logits are detached: only the
student learns from this term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses.classification import classification_loss
from hybridformer.losses.output import LossOutput, model_inputs, require_labels

__all__ = ["DistillationLoss", "DistillationObjective", "distillation_loss"]


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Temperature-scaled KL divergence from the teacher's class distribution to the student's.

    Args:
        student_logits: (B, C) or (B, N, C) unnormalised scores of the student.
        teacher_logits: the teacher's scores, same shape (detached here).
        temperature: softening T > 0 of both distributions.

    Returns:
        Scalar: ``T**2 * KL`` summed over classes, averaged over the other dimensions.

    Raises:
        ValueError: shapes differ, or the temperature is not positive.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() < 2:
        raise ValueError(
            f"distillation_loss: student and teacher logits must have the same shape (..., C), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"distillation_loss: temperature must be > 0, got {temperature}")
    classes = student_logits.shape[-1]
    student = F.log_softmax(student_logits.reshape(-1, classes).float() / temperature, dim=-1)  # (B*, C)
    teacher = F.log_softmax(teacher_logits.detach().reshape(-1, classes).float() / temperature, dim=-1)
    kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


class DistillationLoss(nn.Module):
    """:func:`distillation_loss` at a fixed temperature, as a module."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"DistillationLoss: temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return distillation_loss(student_logits, teacher_logits, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class DistillationObjective(nn.Module):
    """Train a student classifier on a frozen teacher's soft predictions (and optionally the labels).

    ``loss = (1 - label_weight) * distillation_loss(student, teacher, T) + label_weight * CE(student,
    labels) + student.aux_loss``. The teacher belongs to the objective, not to the student: it is
    kept out of the module tree (neither trained nor saved; the student's state-dict keys do not
    change), held in eval mode without gradients, and moved to the batch's device on first use.

    Args:
        teacher: a trained model whose ``model(**inputs).logits`` has the student's shape.
        temperature: softening T of both distributions.
        label_weight: share of the label cross-entropy, in [0, 1] (0: pure distillation, no labels needed).
    """

    def __init__(self, teacher: nn.Module, temperature: float = 1.0, label_weight: float = 0.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"DistillationObjective: temperature must be > 0, got {temperature}")
        if not 0.0 <= label_weight <= 1.0:
            raise ValueError(f"DistillationObjective: label_weight must be in [0, 1], got {label_weight}")
        self.temperature = temperature
        self.label_weight = label_weight
        self._teacher = (teacher.eval().requires_grad_(False),)  # a tuple: not a registered submodule

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher."""
        return self._teacher[0]

    def teacher_logits(self, inputs: Mapping[str, Any]) -> Tensor:
        """The teacher's logits on ``inputs``, without gradient, on their device."""
        teacher = self.teacher
        device = next(v for v in inputs.values() if isinstance(v, Tensor)).device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        with torch.no_grad():
            return teacher.eval()(**inputs).logits

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        inputs = model_inputs(batch)
        target = self.teacher_logits(inputs)
        out = model(**inputs)
        kd = distillation_loss(out.logits, target, self.temperature)
        loss = (1.0 - self.label_weight) * kd
        metrics = {"distillation": kd.detach(), "aux_loss": out.aux_loss.detach()}
        if self.label_weight > 0:
            ce = classification_loss(out.logits, require_labels(batch, "DistillationObjective"))
            loss = loss + self.label_weight * ce
            metrics["cross_entropy"] = ce.detach()
        return LossOutput(loss=loss + out.aux_loss, metrics=metrics)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, label_weight={self.label_weight}"
