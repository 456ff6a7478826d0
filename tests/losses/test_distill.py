"""Distillation loss against the KL divergence written out by hand in float64."""

import math

import pytest
import torch

from hybridformer.losses import DistillationLoss, distillation_loss


def _by_hand(student: torch.Tensor, teacher: torch.Tensor, t: float) -> float:
    """T^2 * mean over rows of sum_c p_c (log p_c - log q_c), p = softmax(teacher/T), q = softmax(student/T)."""
    total = 0.0
    rows_s, rows_t = student.reshape(-1, student.shape[-1]).tolist(), teacher.reshape(-1, teacher.shape[-1]).tolist()
    for s_row, t_row in zip(rows_s, rows_t):
        zs = math.log(sum(math.exp(v / t) for v in s_row))
        zt = math.log(sum(math.exp(v / t) for v in t_row))
        for s, u in zip(s_row, t_row):
            p = math.exp(u / t - zt)
            total += p * ((u / t - zt) - (s / t - zs))
    return t * t * total / len(rows_s)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 7)])
def test_matches_hand_computed_kl(temperature: float, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(shape, generator=g, dtype=torch.float64), 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    got = distillation_loss(student, teacher, temperature)
    assert got.item() == pytest.approx(_by_hand(student, teacher, temperature), rel=1e-5)
    assert DistillationLoss(temperature)(student, teacher).item() == pytest.approx(got.item(), rel=1e-12)


def test_zero_when_student_equals_teacher_and_teacher_gets_no_gradient() -> None:
    teacher = torch.randn(4, 5, requires_grad=True)
    student = teacher.detach().clone().requires_grad_()
    loss = distillation_loss(student, teacher, 2.0)
    assert abs(loss.item()) < 1e-6
    (distillation_loss(student + torch.randn(4, 5), teacher, 2.0)).backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(torch.randn(4, 3), torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DistillationLoss(-1.0)
