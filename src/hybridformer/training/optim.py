"""AdamW with the usual no-decay groups, and a linear-warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .config import TrainConfig

__all__ = ["param_groups", "build_optimizer", "WarmupCosine", "build_scheduler"]


def _named_parameters(model: nn.Module, objective: nn.Module | None) -> list[tuple[str, nn.Parameter]]:
    """The model's parameters by name, then the objective's as ``objective.<name>``."""
    named = list(model.named_parameters())
    if objective is not None:
        named += [(f"objective.{n}", p) for n, p in objective.named_parameters()]
    return named


def param_groups(
    model: nn.Module,
    weight_decay: float,
    lr_multipliers: Mapping[str, float] | None = None,
    objective: nn.Module | None = None,
) -> list[dict]:
    """Split trainable parameters into decayed (matrices, embeddings) and non-decayed groups.

    Parameters with fewer than two dimensions (biases, LayerNorm/RMSNorm weights, scales,
    temperatures) are not decayed: pulling them toward 0 only hurts (BERT, nanoGPT). Shared (tied)
    parameters appear once. With ``lr_multipliers`` each group also carries ``lr_scale``: the factor
    of the longest key contained in the parameter's name (1.0 when none matches); groups are split
    by (decay, factor). Parameters the ``objective`` owns (e.g. a learnable temperature) are
    trained too, named ``objective.<name>``.

    Raises:
        ValueError: a key of ``lr_multipliers`` matches no trainable parameter.
    """
    multipliers = dict(lr_multipliers or {})
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    matched: set[str] = set()
    named = _named_parameters(model, objective)
    for name, param in named:  # each shared parameter once
        if not param.requires_grad:
            continue
        keys = [k for k in multipliers if k in name]
        key = max(keys, key=len) if keys else None
        if key is not None:
            matched.add(key)
        factor = multipliers[key] if key is not None else 1.0
        groups.setdefault((param.ndim >= 2, factor), []).append(param)
    unmatched = sorted(set(multipliers) - matched)
    if unmatched:
        raise ValueError(
            f"train.lr_multipliers: {unmatched[0]!r} matches no trainable parameter name of the model "
            f"(names look like {next((n for n, _ in named), '<none>')!r}); drop it from the config, or on the "
            f"command line replace the whole mapping: --train.lr_multipliers '{{}}'"
        )
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": factor}
        for (decay, factor), params in groups.items()
        if params or factor == 1.0
    ]


def build_optimizer(
    model: nn.Module, config: TrainConfig, objective: nn.Module | None = None
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (the model's and the objective's parameters) with ``config.lr``
    (times each group's ``lr_multipliers`` factor), ``betas``, ``eps`` and ``weight_decay``."""
    groups = param_groups(model, config.weight_decay, config.lr_multipliers, objective)
    # Empty groups (e.g. a pipeline stage without biases of some kind) are left out: a distributed
    # checkpoint keys the optimizer's hyperparameters by parameter name, so an empty group's would be lost.
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("model: has no trainable parameters (all have requires_grad=False)")
    for group in groups:
        group["lr"] = config.lr * group["lr_scale"]
    # The fused kernel updates all parameters in one pass: a MiniLM (22M parameters) step took 2.5 s
    # with torch's default per-tensor loop on our 2-core CPU, and 0.06 s fused.
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, fused=fused)


@dataclass
class WarmupCosine:
    """LR multiplier at step ``s``: ``s / warmup`` during warmup, then cosine from 1 to ``min_ratio``.

    With ``warmup = W`` and ``total = T``: ``f(s) = s / W`` for ``s < W``; otherwise with
    ``p = (s - W) / (T - W)`` (clamped to [0, 1]): ``f = min_ratio + (1 - min_ratio) * (1 + cos(pi p)) / 2``.
    Step 0 therefore trains at lr 0 when warming up (as in Hugging Face's schedule) and the last step
    ``T - 1`` sits just above the floor. A callable object (not a lambda) so ``LambdaLR.state_dict``
    stores its fields.
    """

    warmup_steps: int
    """Steps of linear warmup."""
    total_steps: int
    """Optimizer steps in the whole run."""
    min_ratio: float = 0.0
    """Floor of the cosine, as a fraction of the peak lr."""

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int) -> LambdaLR:
    """Warmup + cosine schedule over ``total_steps``; warmup from ``config.warmup_steps`` or, if 0,
    ``round(config.warmup_ratio * total_steps)``."""
    warmup = config.warmup_steps if config.warmup_steps > 0 else round(config.warmup_ratio * total_steps)
    return LambdaLR(optimizer, WarmupCosine(warmup, total_steps, config.min_lr_ratio))
