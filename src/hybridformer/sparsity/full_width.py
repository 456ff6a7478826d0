"""Run a gated model at full width: every FFN computes all its neurons, gates bypassed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from hybridformer.sparsity.calibration import gated_ffns

__all__ = ["full_width"]


@contextmanager
def full_width(model: nn.Module) -> Iterator[None]:
    """Inside the block, every GatedFFN of ``model`` is the dense ``fc_out(act(fc_in(x)))``.

    The gates are detached for the duration (no gate decisions, no target-rate loss, no gate
    statistics) and put back on exit, even after an exception. Autograd works through it, so a
    training step can run the full-width network and the gated one on the same weights (in-place
    distillation of slimmable networks; see :class:`hybridformer.losses.GateDistillObjective`).
    A pruned FFN runs the neurons it has left.
    """
    saved = [(ffn, ffn.gate) for ffn in gated_ffns(model).values()]
    try:
        for ffn, _ in saved:
            ffn.gate = None
        yield
    finally:
        for ffn, gate in saved:
            ffn.gate = gate
