"""Momentum distillation (ALBEF, Li et al. 2021 §3.3): an exponential-moving-average copy of the model
gives soft targets that are mixed with the hard ones.

- The teacher (:class:`MomentumTeacher`) is a deep copy of the model held by the *objective*, never
  part of the model's module tree; its parameters do not require gradients, so the optimizer skips
  them, while they are in the objective's ``state_dict`` (the Trainer's checkpoint holds it, so
  resume restores the EMA weights).
- Before each training forward (ALBEF's ``_momentum_update``) every teacher parameter and float
  buffer becomes ``m * teacher + (1 - m) * model`` (:func:`ema_update`). With gradient accumulation
  the update runs on every micro-batch, as in ALBEF's code.
- ITC: the targets of the image->text and text->image softmaxes are
  ``alpha * softmax(teacher similarities / temperature) + (1 - alpha) * one_hot``
  (:func:`soft_contrastive_targets`). Captioning and fused MLM: ``(1 - alpha) * CE(hard) + alpha *
  CE(softmax(teacher logits))`` over the same target positions (:func:`distilled_token_loss`).
  With ``alpha = 0`` both are exactly the plain losses. ITM is not distilled (ALBEF does not).

ALBEF also keeps queues of momentum features and ramps alpha up over the first epoch; neither is
done here (the batch is the only negative set, alpha is constant).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.config import check
from hybridformer.losses.mlm import IGNORE_INDEX, mlm_loss

__all__ = ["MomentumConfig", "MomentumTeacher", "ema_update", "soft_contrastive_targets", "distilled_token_loss"]


@dataclass
class MomentumConfig:
    """Momentum distillation of multimodal pretraining (off by default)."""

    enabled: bool = False
    """Train against an EMA teacher's soft targets (ITC, captioning, fused MLM) as well as the hard ones."""
    momentum: float = 0.995
    """EMA factor m: ``teacher = m * teacher + (1 - m) * model`` before every training forward (ALBEF's)."""
    alpha: float = 0.4
    """Weight of the teacher's soft targets (ALBEF's 0.4); 0 gives the plain losses."""

    def __post_init__(self) -> None:
        check(0.0 <= self.momentum < 1.0, "momentum.momentum", f"must be in [0, 1), got {self.momentum}")
        check(0.0 <= self.alpha <= 1.0, "momentum.alpha", f"must be in [0, 1], got {self.alpha}")


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student`` for every parameter and floating
    buffer (integer buffers, e.g. BatchNorm's step count, are copied). The two must share a structure."""
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    t_buffers, s_buffers = dict(teacher.named_buffers()), dict(student.named_buffers())
    if t_params.keys() != s_params.keys() or t_buffers.keys() != s_buffers.keys():
        raise ValueError("momentum teacher: its parameters and buffers no longer match the model's "
                         "(was the model changed after the objective was built?)")
    for name, t in t_params.items():
        t.lerp_(s_params[name].detach().to(t.dtype), 1.0 - momentum)
    for name, t in t_buffers.items():
        s = s_buffers[name].detach()
        if t.is_floating_point():
            t.lerp_(s.to(t.dtype), 1.0 - momentum)
        else:
            t.copy_(s)


class MomentumTeacher(nn.Module):
    """The EMA copy of ``model`` (see the module docstring). Always run in eval mode, without gradient.

    Args:
        model: the model being trained (copied now, so build this after loading its weights).
        config: momentum and alpha.
    """

    def __init__(self, model: nn.Module, config: MomentumConfig | None = None) -> None:
        super().__init__()
        self.config = config or MomentumConfig(enabled=True)
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.model.eval()

    @property
    def alpha(self) -> float:
        return self.config.alpha

    def train(self, mode: bool = True) -> "MomentumTeacher":
        """The teacher stays in eval mode (no dropout in its targets)."""
        super().train(mode)
        self.model.eval()
        return self

    def update(self, student: nn.Module) -> None:
        """One EMA step towards ``student``."""
        ema_update(self.model, student, self.config.momentum)


def soft_contrastive_targets(teacher_logits: Tensor, hard_targets: Tensor, alpha: float) -> Tensor:
    """(B, C) ``alpha * softmax(teacher_logits) + (1 - alpha) * one_hot(hard_targets, C)``."""
    one_hot = F.one_hot(hard_targets, teacher_logits.shape[1]).to(teacher_logits.dtype)
    return alpha * torch.softmax(teacher_logits.detach(), dim=1) + (1.0 - alpha) * one_hot


def distilled_token_loss(logits: Tensor, targets: Tensor, teacher_logits: Tensor, alpha: float) -> Tensor:
    """``(1 - alpha) * CE(logits, targets) + alpha * mean_t CE(logits_t, softmax(teacher_logits_t))``
    over the positions whose target is not ``IGNORE_INDEX``: logits and teacher_logits (B, N, V),
    targets (B, N)."""
    if teacher_logits.shape != logits.shape:
        raise ValueError(f"teacher_logits: expected shape {tuple(logits.shape)}, got {tuple(teacher_logits.shape)}")
    hard = mlm_loss(logits, targets)
    real = targets != IGNORE_INDEX  # (B, N)
    log_p = F.log_softmax(logits.float(), dim=-1)  # (B, N, V)
    soft_ce = -(torch.softmax(teacher_logits.detach().float(), dim=-1) * log_p).sum(-1)  # (B, N)
    soft = (soft_ce * real).sum() / real.sum().clamp(min=1)  # 0 (not NaN) with no target, like mlm_loss
    return (1.0 - alpha) * hard + alpha * soft
