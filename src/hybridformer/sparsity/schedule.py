"""The Gumbel-Softmax temperature and open-target schedules, and helpers that set them on every gate."""

from __future__ import annotations

from torch import nn

from hybridformer.sparsity.config import SparsityConfig
from hybridformer.sparsity.gating import SparseGate

__all__ = ["set_sparsity_step", "set_temperature", "target_at", "temperature_at"]


def temperature_at(config: SparsityConfig, step: int) -> float:
    """Temperature at training step ``step``: exponential decay from ``tau_start`` to ``tau_end``.

    ``tau = tau_start * (tau_end / tau_start) ** min(step / anneal_steps, 1)`` (Jang et al. 2017
    anneal exponentially); held at ``tau_end`` afterwards, and from the start when ``anneal_steps``
    is 0.
    """
    if step < 0:
        raise ValueError(f"temperature_at: step must be >= 0, got {step}")
    progress = 1.0 if config.anneal_steps == 0 else min(step / config.anneal_steps, 1.0)
    return config.tau_start * (config.tau_end / config.tau_start) ** progress


def target_at(config: SparsityConfig, step: int) -> float:
    """Open-fraction target at training step ``step``.

    ``target_active + (target_start - target_active) * (1 - min(step / anneal_steps, 1)) ** 3``, the
    cubic schedule of gradual pruning (Zhu & Gupta, 2017); ``target_active`` throughout when
    ``target_start`` is None, and from the start when ``anneal_steps`` is 0.
    """
    if step < 0:
        raise ValueError(f"target_at: step must be >= 0, got {step}")
    if config.target_start is None:
        return config.target_active
    progress = 1.0 if config.anneal_steps == 0 else min(step / config.anneal_steps, 1.0)
    return config.target_active + (config.target_start - config.target_active) * (1.0 - progress) ** 3


def set_sparsity_step(model: nn.Module, step: int) -> int:
    """Set every gate in ``model`` to its temperature and target at ``step``; returns how many gates were set."""
    gates = [m for m in model.modules() if isinstance(m, SparseGate)]
    for gate in gates:
        gate.temperature = temperature_at(gate.config, step)
        gate.target = target_at(gate.config, step)
    return len(gates)


def set_temperature(model: nn.Module, tau: float) -> int:
    """Set every gate in ``model`` to temperature ``tau`` (> 0); returns how many gates were set."""
    if not tau > 0:
        raise ValueError(f"set_temperature: tau must be > 0, got {tau}")
    gates = [m for m in model.modules() if isinstance(m, SparseGate)]
    for gate in gates:
        gate.temperature = float(tau)
    return len(gates)
