"""What the Trainer returns and the hooks it calls: step and run results, callbacks, the divergence error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["Callback", "StepOutput", "TrainResult", "TrainingDivergedError", "check_finite"]


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; the message names the step."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    final_step: int
    """Optimizer steps completed (including those before a resume)."""
    losses: list[float]
    """Training loss of every step ``1..final_step`` (mean over its micro-batches)."""
    tokens_per_s: float
    """Training throughput of this process: real (non-pad) tokens per second of training time
    (evaluation and checkpointing excluded); examples/s when batches carry no ``attention_mask``."""
    examples_per_s: float
    """Training examples per second of training time."""
    peak_memory_mb: float
    """CUDA: peak allocated tensor memory of the device. CPU: peak resident memory of the process."""
    checkpoint_path: Path | None
    """The last checkpoint written (None if none was)."""
    eval_metrics: dict[str, float] = field(default_factory=dict)
    """The last ``eval_fn`` result (empty without ``eval_fn``)."""
    train_seconds: float = 0.0
    """Wall time spent in training steps in this process."""
    stopped_early: bool = False
    """True when a callback called :meth:`Trainer.request_stop` before the planned last step."""


@dataclass
class StepOutput:
    """What :meth:`Trainer.train_step` returns: the losses of one optimizer step, gradients accumulated."""

    micro_losses: Tensor
    """(n_micro,) float64, detached: each micro-batch's loss."""
    metrics: dict[str, Tensor] = field(default_factory=dict)
    """The objective's metrics, averaged over the micro-batches (detached scalars)."""

    @property
    def loss(self) -> Tensor:
        """Scalar float64: the step's loss, the mean over its micro-batches."""
        return self.micro_losses.mean()


class Callback:
    """Hooks called by the Trainer; subclass and override what you need (all default to no-ops)."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first step (after any resume)."""

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After optimizer step ``step`` (1-based); ``metrics`` has ``loss`` and ``lr``."""

    def on_evaluate(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """After ``eval_fn`` ran at ``step``."""

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        """After the last step and the final checkpoint."""


def check_finite(step: int, micro_losses: Tensor, grad_norm: Tensor | None, losses: list[float]) -> None:
    """Raise :class:`TrainingDivergedError` naming the step (and micro-batch) when a loss or the gradient
    norm is not finite, before the optimizer updates the weights."""
    last = f"; last finite loss {losses[-1]:.4g} at step {step - 1}" if losses else ""
    hint = "lower the learning rate, use precision=fp32 or set clip_norm"
    bad = (~torch.isfinite(micro_losses)).nonzero()
    if len(bad):
        k = int(bad[0])
        raise TrainingDivergedError(
            f"loss is {micro_losses[k].item()} at step {step} (micro-batch {k + 1} of {len(micro_losses)}){last}. "
            f"Stopped before updating the weights; {hint}."
        )
    if grad_norm is not None and not torch.isfinite(grad_norm):
        raise TrainingDivergedError(
            f"gradient norm is {grad_norm.item()} at step {step} though the loss is finite{last}. "
            f"Stopped before updating the weights; {hint}."
        )
