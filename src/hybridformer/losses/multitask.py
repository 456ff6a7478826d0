"""A weighted sum of objectives that logs every term (ALBEF / BLIP pretraining: ITC + ITM + MLM + captioning).

``MultiTaskObjective({"itc": (ContrastiveObjective(), 1.0), "itm": (MatchingObjective(), 1.0), ...})``:
``loss = sum(weight * term.loss)``; metrics hold each term's loss as ``<name>_loss``, the term's own
metrics, and ``loss`` the weighted total. The terms are submodules, so their parameters (the
contrastive temperature) are the objective's: the Trainer optimises and checkpoints them. When both a
:class:`ContrastiveObjective` and a :class:`MatchingObjective` are present, the matching term mines its
hard negatives from the contrastive term's similarities of the same batch (no second encoder pass).

With ``momentum=MomentumTeacher(model, ...)`` (ALBEF's momentum distillation, off unless given), the
teacher takes one EMA step towards the model before every forward that records gradients, and the
ITC, captioning and MLM terms mix its soft targets in with ``alpha`` (:mod:`hybridformer.losses.momentum`).
The teacher is a submodule of this objective (not of the model) whose weights need no gradient: the
Trainer checkpoints it with the objective and does not optimise it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from hybridformer.losses.captioning import CaptionObjective, FusedMLMObjective
from hybridformer.losses.contrastive import ContrastiveObjective
from hybridformer.losses.matching import MatchingObjective
from hybridformer.losses.momentum import MomentumTeacher
from hybridformer.losses.output import LossOutput

__all__ = ["MultiTaskObjective"]


class MultiTaskObjective(nn.Module):
    """Weighted sum of named objectives (see the module docstring).

    Args:
        terms: name -> (objective, weight); names are the metric prefixes; weights must be >= 0.
        momentum: the EMA teacher of momentum distillation (None: off).
    """

    def __init__(self, terms: Mapping[str, tuple[nn.Module, float]], momentum: MomentumTeacher | None = None) -> None:
        super().__init__()
        if not terms:
            raise ValueError("terms: give at least one objective")
        for name, (_, weight) in terms.items():
            if weight < 0:
                raise ValueError(f"terms.{name}: weight must be >= 0, got {weight}")
        self.terms = nn.ModuleDict({name: objective for name, (objective, _) in terms.items()})
        self.weights = {name: float(weight) for name, (_, weight) in terms.items()}
        self.momentum = momentum

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        total: Tensor | None = None
        metrics: dict[str, Tensor] = {}
        similarity: Tensor | None = None
        offset: int | None = None
        teacher = self.momentum
        if teacher is not None and torch.is_grad_enabled():
            teacher.update(model)  # ALBEF's _momentum_update, before the teacher's targets
        for name, term in self.terms.items():
            if isinstance(term, ContrastiveObjective):
                scored = term.score(model, batch, teacher)
                # The whole gathered batch's similarities: ITM draws its negatives from all of it.
                similarity, offset = scored.global_logits, scored.offset  # (G, G)
                out = LossOutput(loss=scored.loss, metrics=term.metrics(scored))
            elif isinstance(term, MatchingObjective):
                out = term(model, batch, similarity=similarity, offset=offset)
            elif isinstance(term, (CaptionObjective, FusedMLMObjective)):
                out = term(model, batch, teacher=teacher)
            else:
                out = term(model, batch)
            weighted = self.weights[name] * out.loss
            total = weighted if total is None else total + weighted
            metrics[f"{name}_loss"] = out.loss.detach()
            metrics.update({k: v for k, v in out.metrics.items() if k != f"{name}_loss"})
        assert total is not None
        metrics["loss"] = total.detach()
        return LossOutput(loss=total, metrics=metrics)
