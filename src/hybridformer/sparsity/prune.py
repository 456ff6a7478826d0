"""Structured pruning of gated FFNs: drop the neuron groups a calibration set rarely opens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from hybridformer.sparsity.calibration import gated_ffns, measure_group_usage
from hybridformer.sparsity.report import (
    LayerPruneReport,
    PruneReport,
    count_parameters,
    dense_ffn_flops,
    gated_ffn_flops,
)

__all__ = ["prune"]


def prune(model: nn.Module, calibration_batches: Iterable[Any], min_activation: float) -> PruneReport:
    """Remove from every gated FFN of ``model`` the groups opened by fewer than ``min_activation`` tokens.

    Open rates are measured in eval mode (deterministic gates, as at inference) over the real tokens
    of ``calibration_batches``. Removed groups leave ``fc_in`` (rows), ``fc_out`` (columns) and the
    gate's group logits; the tensors are replaced by smaller ones, so the model's state dict really
    has fewer parameters. Each layer keeps at least its most used group. The pruned model computes
    exactly what the gated model computes for every token that opens no removed group (with
    ``inference="top_g"`` a token whose top groups included a removed one now opens its next best).

    To reload a pruned checkpoint, build the model from the same config and call
    ``load_state_dict``: each GatedFFN resizes itself from its saved ``kept_groups`` buffer (the
    original indices of the groups it kept).

    Args:
        model: any module containing GatedFFN layers with gates on; pruned in place.
        calibration_batches: iterable of batches, each a dict passed as ``model(**batch)``, a
            tuple/list passed as ``model(*batch)`` or a tensor passed as ``model(batch)``.
        min_activation: open-rate threshold in [0, 1]; groups whose rate is strictly below it go.
            0 removes nothing (the report then only measures; parameters stay the same objects);
            a tiny positive value removes only never-opened groups.

    Returns:
        PruneReport with parameters and active FLOPs per token before and after, per layer and total.

    Raises:
        ValueError: ``min_activation`` outside [0, 1], no gated FFN, empty or malformed batches.
    """
    if not 0.0 <= min_activation <= 1.0:
        raise ValueError(f"prune: min_activation must be in [0, 1], got {min_activation}")
    ffns = gated_ffns(model)
    params_before = count_parameters(model)
    usage = measure_group_usage(model, calibration_batches)
    layers = []
    for name, ffn in ffns.items():
        rate = usage[name].open_rate  # (G,)
        keep = (rate >= min_activation).nonzero().flatten()
        if keep.numel() == 0:
            keep = rate.argmax().view(1)
        removed = torch.ones(ffn.n_groups, dtype=torch.bool)
        removed[keep] = False
        params = count_parameters(ffn)
        flops = gated_ffn_flops(ffn, float(rate.sum()))
        removed_groups = ffn.kept_groups[removed.to(ffn.kept_groups.device)].tolist()
        if keep.numel() < ffn.n_groups:
            ffn.keep_groups(keep)
        layers.append(
            LayerPruneReport(
                name=name,
                groups_before=removed.numel(),
                groups_after=keep.numel(),
                removed_groups=removed_groups,
                open_rate=rate.tolist(),
                params_before=params,
                params_after=count_parameters(ffn),
                flops_per_token_before=flops,
                flops_per_token_after=gated_ffn_flops(ffn, float(rate[keep].sum())),
            )
        )
    return PruneReport(
        layers=layers,
        min_activation=min_activation,
        n_tokens=next(iter(usage.values())).n_tokens,
        params_before=params_before,
        params_after=count_parameters(model),
        ffn_params_before=sum(layer.params_before for layer in layers),
        ffn_params_after=sum(layer.params_after for layer in layers),
        dense_flops_per_token=sum(dense_ffn_flops(ffn) for ffn in ffns.values()),
        active_flops_per_token_before=sum(layer.flops_per_token_before for layer in layers),
        active_flops_per_token_after=sum(layer.flops_per_token_after for layer in layers),
    )
