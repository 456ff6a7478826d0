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

from torch import nn

from hybridformer.losses._multimodal_batch import context_of, require
from hybridformer.losses.captioning import caption_targets
from hybridformer.losses.distill import DistillationObjective, distillation_loss
from hybridformer.losses.mlm import IGNORE_INDEX, mlm_loss
from hybridformer.losses.output import LossOutput

__all__ = ["CaptionDistillationObjective"]


class CaptionDistillationObjective(DistillationObjective):
    """A multimodal student trained on a frozen multimodal teacher's captioning distributions
    (the teacher held as :class:`~hybridformer.losses.DistillationObjective` holds it).

    Args:
        teacher: a trained model called like the student (``model(input_ids, attention_mask, **context).logits``).
        temperature: softening T of both distributions.
        label_weight: share of the caption cross-entropy, in [0, 1].
    """

    def __init__(self, teacher: nn.Module, temperature: float = 2.0, label_weight: float = 0.5) -> None:
        super().__init__(teacher, temperature, label_weight)

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        ids = require(batch, "input_ids", "CaptionDistillationObjective")
        mask = batch.get("attention_mask")
        inputs = {"input_ids": ids, "attention_mask": mask, **context_of(batch)}
        target = self.teacher_logits(inputs)  # (B, N, V)
        out = model(**inputs)
        targets = caption_targets(ids, mask)
        real = targets != IGNORE_INDEX  # (B, N)
        kd = distillation_loss(out.logits[real], target[real], self.temperature)  # (K, V) real positions
        ce = mlm_loss(out.logits, targets)
        loss = (1.0 - self.label_weight) * kd + self.label_weight * ce
        return LossOutput(loss=loss + out.aux_loss,
                          metrics={"distillation": kd.detach(), "caption_loss": ce.detach(), "aux_loss": out.aux_loss.detach()})
