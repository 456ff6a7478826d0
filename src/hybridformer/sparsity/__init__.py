"""Dynamic sparse activation (SPEC §3): gated FFN neuron groups that really skip compute, and pruning.

Public API::

    from hybridformer.sparsity import GatedFFN, SparsityConfig, prune

    ffn = GatedFFN(512, 2048, SparsityConfig(enabled=True, n_groups=8, target_active=0.5))
    out = ffn(x, key_padding_mask)          # FFNOutput(hidden_states, aux_loss, stats)
    set_sparsity_step(model, step)          # anneal the Gumbel temperature (Trainer: ffn.set_step)
    rewire_by_importance(model, batches)    # before training the gates: group 0 = most important neurons
    with full_width(model): ...             # every FFN dense (gates bypassed), autograd on
    report = prune(model, batches, 0.05)    # PruneReport: params and active FLOPs/token before/after
"""

from hybridformer.sparsity.calibration import GroupUsage, gated_ffns, measure_group_usage
from hybridformer.sparsity.config import SparsityConfig
from hybridformer.sparsity.dispatch import grouped_ffn, masked_ffn
from hybridformer.sparsity.full_width import full_width
from hybridformer.sparsity.gating import GateDecision, SparseGate, gumbel_sigmoid_st
from hybridformer.sparsity.prune import prune
from hybridformer.sparsity.rewire import neuron_importance, rewire_by_importance
from hybridformer.sparsity.report import (
    LayerPruneReport,
    PruneReport,
    count_parameters,
    dense_ffn_flops,
    gated_ffn_flops,
)
from hybridformer.sparsity.schedule import set_sparsity_step, set_temperature, target_at, temperature_at
from hybridformer.sparsity.sparse_ffn import ACTIVATIONS, FFNOutput, GatedFFN
from hybridformer.sparsity.stats import GateStats, gate_stats

__all__ = [
    "ACTIVATIONS",
    "FFNOutput",
    "GateDecision",
    "GateStats",
    "GatedFFN",
    "GroupUsage",
    "LayerPruneReport",
    "PruneReport",
    "SparseGate",
    "SparsityConfig",
    "count_parameters",
    "dense_ffn_flops",
    "full_width",
    "gate_stats",
    "gated_ffn_flops",
    "gated_ffns",
    "grouped_ffn",
    "gumbel_sigmoid_st",
    "masked_ffn",
    "measure_group_usage",
    "neuron_importance",
    "prune",
    "rewire_by_importance",
    "set_sparsity_step",
    "set_temperature",
    "target_at",
    "temperature_at",
]
