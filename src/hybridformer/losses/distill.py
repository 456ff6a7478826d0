"""Knowledge distillation (Hinton et al., 2015): a student matches a teacher's softened predictions.

``distillation_loss(s, t, T) = T**2 * mean_b KL(softmax(t_b / T) || softmax(s_b / T))``. The T**2
factor keeps the gradient's scale independent of the temperature, so the loss mixes with a
cross-entropy on labels without retuning its weight. The teacher's logits are detached: only the
student learns from this term.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DistillationLoss", "distillation_loss"]


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
