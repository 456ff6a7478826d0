"""Measure how often each FFN neuron group opens on calibration data (what pruning decides on)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hybridformer.inputs import model_inputs
from hybridformer.sparsity.sparse_ffn import FFNOutput, GatedFFN

__all__ = ["GroupUsage", "call_model", "gated_ffns", "measure_group_usage", "run_calibration"]


@dataclass
class GroupUsage:
    """Group open counts of one GatedFFN over a calibration set (eval-mode, deterministic gates)."""

    open_counts: Tensor
    """(G,) float64: tokens that computed each current group (skipped tokens compute none)."""
    n_tokens: int
    """Real (non-padding) tokens the layer saw."""

    @property
    def open_rate(self) -> Tensor:
        """(G,) fraction of tokens that computed each group."""
        return self.open_counts / max(self.n_tokens, 1)


def gated_ffns(model: nn.Module) -> dict[str, GatedFFN]:
    """The GatedFFN modules of ``model`` whose gates are on, by module name ("" if it is the model)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, GatedFFN) and m.gate is not None}


def call_model(model: nn.Module, batch: Any) -> Any:
    """Run one calibration batch: a mapping as ``model(**inputs)`` (its ``labels`` left out: a model
    takes inputs only), a tuple/list as ``model(*batch)``, a tensor as ``model(batch)``."""
    if isinstance(batch, Mapping):
        return model(**model_inputs(batch))
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    if isinstance(batch, Tensor):
        return model(batch)
    raise ValueError(
        f"calibration_batches: each batch must be a dict (model(**batch)), a tuple/list (model(*batch)) "
        f"or a tensor (model(batch)), got {type(batch).__name__}"
    )


def measure_group_usage(model: nn.Module, calibration_batches: Iterable[Any]) -> dict[str, GroupUsage]:
    """Run ``model`` in eval mode without gradients over the batches and count group openings.

    Args:
        model: any module containing GatedFFN layers with gates on (the model itself may be one).
        calibration_batches: iterable of batches, each a dict passed as ``model(**batch)``, a
            tuple/list passed as ``model(*batch)`` or a tensor passed as ``model(batch)``.

    Returns:
        GroupUsage per gated FFN, keyed by module name. The model's train/eval mode is restored.

    Raises:
        ValueError: the model has no gated FFN, no batches were given, or a batch has a bad type.
    """
    ffns = gated_ffns(model)
    if not ffns:
        raise ValueError("model: contains no GatedFFN with gates on (SparsityConfig.enabled=True)")
    usage = {name: GroupUsage(torch.zeros(ffn.n_groups, dtype=torch.float64), 0) for name, ffn in ffns.items()}

    def record(name: str):
        def hook(module: nn.Module, args: Any, output: FFNOutput) -> None:
            stats = output.stats
            n = int(stats.n_tokens)
            usage[name].open_counts += (stats.group_open_rate.double() * n).round().cpu()
            usage[name].n_tokens += n

        return hook

    handles = [ffn.register_forward_hook(record(name)) for name, ffn in ffns.items()]
    run_calibration(model, calibration_batches, handles, "pruning")
    return usage


def run_calibration(model: nn.Module, calibration_batches: Iterable[Any], handles: list[Any], purpose: str) -> int:
    """Run ``model`` in eval mode without gradients over the batches (its hooks record what they
    measure), then restore its train/eval mode and remove the hook ``handles``.

    Returns:
        The number of batches run.

    Raises:
        ValueError: no batches (the message names ``purpose``), or a batch of a bad type.
    """
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        with torch.no_grad():
            for batch in calibration_batches:
                call_model(model, batch)
                n_batches += 1
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if n_batches == 0:
        raise ValueError(f"calibration_batches: is empty; {purpose} needs at least one batch")
    return n_batches
