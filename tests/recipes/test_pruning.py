"""Pruning to a parameter budget: the chosen threshold is the lowest that removes the asked fraction."""

from __future__ import annotations

import copy

import pytest
import torch

from hybridformer.attention import AttentionConfig
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.models import TextClassifier
from hybridformer.recipes import PruneConfig, prune_classifier
from hybridformer.recipes.pruning import threshold_for_fraction
from hybridformer.sparsity import SparsityConfig, measure_group_usage


def _gated_classifier() -> TextClassifier:
    torch.manual_seed(0)
    config = TextEncoderConfig(
        vocab_size=50, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_positions=16,
        attention=AttentionConfig(kind="full"), sparsity=SparsityConfig(enabled=True, n_groups=8),
    )
    model = TextClassifier(TextEncoder(config), 2)
    for block in model.encoder.blocks:
        # Spread the groups' open rates (fresh gates open every group about equally often).
        torch.nn.init.normal_(block.ffn.gate.groups.weight, std=0.5)
        torch.nn.init.normal_(block.ffn.gate.groups.bias, std=1.0)
    return model.eval()


def _batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(1, 50, (4, 16), generator=g)} for _ in range(3)]


@pytest.mark.parametrize("fraction", [0.2, 0.3, 0.5])
def test_threshold_is_the_lowest_reaching_the_fraction(fraction: float) -> None:
    model, batches = _gated_classifier(), _batches()
    usage = measure_group_usage(model, batches)
    threshold = threshold_for_fraction(model, usage, fraction)
    rates = sorted({r for u in usage.values() for r in u.open_rate.tolist()})
    report = prune_classifier(copy.deepcopy(model), batches, PruneConfig(min_activation=threshold, target_removed=None))
    assert report.ffn_params_removed >= fraction
    # The next lower candidate threshold (the measured rate just below) removes too little.
    lower = max(r for r in rates if r < threshold)
    less = prune_classifier(copy.deepcopy(model), batches, PruneConfig(min_activation=lower))
    assert less.ffn_params_removed < fraction
    # target_removed chooses the same threshold itself.
    chosen = prune_classifier(copy.deepcopy(model), batches, PruneConfig(target_removed=fraction))
    assert chosen.min_activation == threshold and chosen.ffn_params_after == report.ffn_params_after


def test_pruning_needs_gates() -> None:
    dense = TextClassifier(TextEncoder(TextEncoderConfig(vocab_size=50, d_model=32, n_layers=1, n_heads=2, d_ff=64)), 2)
    with pytest.raises(ValueError, match="model.sparsity.enabled"):
        prune_classifier(dense, _batches(), PruneConfig(enabled=True))
