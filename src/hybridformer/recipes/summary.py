"""What a run says before it starts: the lines shared by the recipes' start-up summaries.

They go to the ``hybridformer.recipes`` logger (the CLI prints it on stderr), so a run in a log file
says what it is doing before the first step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from hybridformer.training import Trainer

__all__ = ["announce", "model_line", "training_line"]

log = logging.getLogger("hybridformer.recipes")


def model_line(model: nn.Module, source: str | Path) -> str:
    """``model: <source>, 22.7M parameters, attention hybrid (window 64, global_k 32, ...), FFN gates off``."""
    encoder = getattr(model, "encoder", model)
    cfg: Any = getattr(encoder, "config", None)
    params = sum(p.numel() for p in model.parameters())
    line = f"model: {source}, {params / 1e6:.1f}M parameters"
    if cfg is not None and getattr(cfg, "attention", None) is not None:
        a = cfg.attention
        kind = a.kind if a.kind == "full" else f"{a.kind} (window {a.window}, global_k {a.global_k}, {a.local} local)"
        line += f", {cfg.n_layers} layers, attention {kind}, max_positions {cfg.max_positions}"
    sparsity = getattr(cfg, "sparsity", None)
    if sparsity is not None:
        line += ", FFN gates " + (f"on ({sparsity.n_groups} groups)" if sparsity.enabled else "off")
    return line


def training_line(trainer: Trainer) -> str:
    """``training: 120 steps (1 epoch of 120 batches of 16, grad_accum 1), lr 5e-05, seed 0, on cpu``."""
    cfg = trainer.config
    epochs = trainer.total_steps * cfg.grad_accum / trainer.batches_per_epoch
    return (
        f"training: {trainer.total_steps} steps ({epochs:.3g} epoch(s) of {trainer.batches_per_epoch} batches of "
        f"{cfg.batch_size}, grad_accum {cfg.grad_accum}), lr {cfg.lr:g}, seed {cfg.seed}, on {trainer.device}"
    )


def announce(lines: list[str]) -> None:
    """Log each line of a start-up or closing summary."""
    for line in lines:
        log.info(line)
