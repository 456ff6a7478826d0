"""Distillation of the joint decoder's next-token distributions (a multimodal student from its teacher).

``loss = (1 - label_weight) * T² KL(teacher_T || student_T) + label_weight * CE(student, caption) +
aux``, both averaged over the caption's real next-token targets (padding and the position after the
last token are never targets, as in :func:`~hybridformer.losses.caption_targets`). The teacher belongs
to the objective, as in :class:`~hybridformer.losses.DistillationObjective`: out of the module tree,
frozen, in eval mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hybridformer.losses._multimodal_batch import context_of, require
from hybridformer.losses.captioning import caption_targets
from hybridformer.losses.distill import distillation_loss
from hybridformer.losses.mlm import IGNORE_INDEX, mlm_loss
from hybridformer.losses.output import LossOutput

__all__ = ["CaptionDistillationObjective"]


class CaptionDistillationObjective(nn.Module):
    """A multimodal student trained on a frozen multimodal teacher's captioning distributions.

    Args:
        teacher: a trained model called like the student (``model(ids, mask, **context).logits``).
        temperature: softening T of both distributions.
        label_weight: share of the caption cross-entropy, in [0, 1].
    """

    def __init__(self, teacher: nn.Module, temperature: float = 2.0, label_weight: float = 0.5) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"CaptionDistillationObjective: temperature must be > 0, got {temperature}")
        if not 0.0 <= label_weight <= 1.0:
            raise ValueError(f"CaptionDistillationObjective: label_weight must be in [0, 1], got {label_weight}")
        self.temperature, self.label_weight = temperature, label_weight
        self._teacher = (teacher.eval().requires_grad_(False),)  # a tuple: not a registered submodule

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher."""
        return self._teacher[0]

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        ids = require(batch, "input_ids", "CaptionDistillationObjective")
        mask = batch.get("attention_mask")
        context = context_of(batch)
        with torch.no_grad():
            target = self.teacher.eval()(ids, mask, **context).logits  # (B, N, V)
        out = model(ids, mask, **context)
        targets = caption_targets(ids, mask)
        real = targets != IGNORE_INDEX  # (B, N)
        kd = distillation_loss(out.logits[real], target[real], self.temperature)  # (K, V) real positions
        ce = mlm_loss(out.logits, targets)
        loss = (1.0 - self.label_weight) * kd + self.label_weight * ce
        return LossOutput(loss=loss + out.aux_loss,
                          metrics={"distillation": kd.detach(), "caption_loss": ce.detach(), "aux_loss": out.aux_loss.detach()})

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, label_weight={self.label_weight}"
