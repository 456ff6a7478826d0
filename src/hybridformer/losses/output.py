"""What every objective returns, and the one way objectives split a batch into model inputs and labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor, nn

from hybridformer.inputs import LABELS, model_inputs

__all__ = ["LABELS", "LossOutput", "Objective", "model_inputs", "require_labels"]


@dataclass
class LossOutput:
    """One objective's result on one batch."""

    loss: Tensor
    """Scalar to minimise (task loss plus the model's auxiliary terms), with gradient."""
    metrics: dict[str, Tensor] = field(default_factory=dict)
    """Named detached scalars for logging (the loss's terms, accuracy, ...)."""


class Objective(Protocol):
    """``objective(model, batch) -> LossOutput``: runs ``model`` on the batch and scores its output.

    The model is an argument, never a submodule: the student's module paths and state-dict keys are
    the same whichever objective trains it. An objective may own parameters (e.g. a learnable
    temperature); the Trainer optimises and checkpoints them with the model's.
    """

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput: ...


def require_labels(batch: Mapping[str, Any], objective: str) -> Tensor:
    """The batch's ``labels``, or a ValueError naming the objective that needs them."""
    labels = batch.get(LABELS)
    if not isinstance(labels, Tensor):
        raise ValueError(f"{objective}: the batch has no `labels` tensor (keys: {sorted(batch)})")
    return labels
