"""The ``prune`` section of fine-tuning: drop rarely opened FFN groups after training, on training data."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hybridformer.config import check
from hybridformer.data import LengthBucketBatchSampler, TextCollator, TextDataset, iterate_batches
from hybridformer.sparsity import GroupUsage, PruneReport, gated_ffns, measure_group_usage, prune

__all__ = ["PruneConfig", "calibration_batches", "threshold_for_fraction", "prune_classifier"]


@dataclass
class PruneConfig:
    """Structured pruning of the gated FFNs once training is done (needs ``model.sparsity.enabled``)."""

    enabled: bool = False
    """Prune after training, then evaluate and save the pruned model."""
    min_activation: float = 0.05
    """Groups opened by fewer than this fraction of the calibration tokens are removed."""
    target_removed: float | None = None
    """When set, it wins over ``min_activation``: the threshold becomes the lowest calibration open
    rate that removes at least this fraction of the gated FFNs' parameters (a parameter budget)."""
    calibration_batches: int = 8
    """Training batches (of ``train.batch_size`` examples) on which the open rates are measured."""

    def __post_init__(self) -> None:
        check(0.0 <= self.min_activation <= 1.0, "min_activation", f"must be in [0, 1], got {self.min_activation}")
        check(
            self.target_removed is None or 0.0 < self.target_removed < 1.0,
            "target_removed",
            f"must be in (0, 1) or None, got {self.target_removed}",
        )
        check(self.calibration_batches >= 1, "calibration_batches", f"must be >= 1, got {self.calibration_batches}")


def calibration_batches(
    dataset: TextDataset, collate: TextCollator, lengths: list[int], batch_size: int, n_batches: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    """The first ``n_batches`` length-bucketed training batches of a ``seed``-fixed order.

    ``lengths`` are the examples' token lengths (:func:`~hybridformer.data.token_lengths`), which the
    training sampler has already computed.
    """
    sampler = LengthBucketBatchSampler(lengths, batch_size, shuffle=True, seed=seed)
    return list(iterate_batches(dataset, collate, list(itertools.islice(sampler, n_batches))))


def threshold_for_fraction(model: nn.Module, usage: dict[str, GroupUsage], fraction: float) -> float:
    """The lowest ``min_activation`` with which :func:`~hybridformer.sparsity.prune` removes at least
    ``fraction`` of the gated FFNs' parameters, given the groups' measured open rates.

    Candidates are the measured rates themselves (prune drops rates strictly below the threshold);
    each layer keeps its most used group, as prune does. Returns 1.0 when no threshold reaches
    ``fraction``; groups opened by every calibration token are then kept, so the fraction removed
    (in the report) falls short. Threshold gates trained to an open fraction above 0.5 open nearly
    every group at inference; use ``inference="top_g"`` gates to make the open rates informative.
    """
    ffns = gated_ffns(model)
    total = sum(sum(p.numel() for p in ffn.parameters()) for ffn in ffns.values())
    groups: list[tuple[float, int]] = []  # (open rate, parameters that go with the group)
    for name, ffn in ffns.items():
        rate = usage[name].open_rate.tolist()
        # A group owns group_size rows of fc_in (weights and biases), as many columns of fc_out, and
        # one row of the gate's group logits.
        size = ffn.group_size * (2 * ffn.d_model + 1) + ffn.gate.groups.in_features + 1
        keep = max(range(len(rate)), key=rate.__getitem__)
        groups.extend((r, size) for g, r in enumerate(rate) if g != keep)
    removed, last = 0, None
    for rate, size in sorted(groups):
        # A tie with the last removed group must go too: prune cuts strictly below the threshold.
        if removed >= fraction * total and rate != last:
            return rate
        removed += size
        last = rate
    return 1.0


def prune_classifier(model: nn.Module, batches: list[dict[str, Any]], config: PruneConfig) -> PruneReport:
    """Prune ``model``'s gated FFNs in place on the calibration ``batches`` as ``config`` says.

    Raises:
        ValueError: the model has no gated FFN (set ``model.sparsity.enabled``).
    """
    if not gated_ffns(model):
        raise ValueError("prune.enabled: the model has no gated FFN to prune; set model.sparsity.enabled=true")
    device = next(model.parameters()).device
    batches = [{k: v.to(device) for k, v in batch.items()} for batch in batches]
    threshold = config.min_activation
    if config.target_removed is not None:
        threshold = threshold_for_fraction(model, measure_group_usage(model, batches), config.target_removed)
    return prune(model, batches, threshold)
