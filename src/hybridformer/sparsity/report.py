"""Parameter and FLOP accounting of gated FFNs, and the report ``prune`` returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from hybridformer.sparsity.sparse_ffn import GatedFFN

__all__ = ["LayerPruneReport", "PruneReport", "count_parameters", "dense_ffn_flops", "gated_ffn_flops"]


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements of ``module`` (what its state dict stores, buffers aside)."""
    return sum(p.numel() for p in module.parameters())


def dense_ffn_flops(ffn: GatedFFN) -> float:
    """FLOPs per token of the FFN run densely at its built width (no gate): 2 per multiply-add."""
    d_ff = ffn.group_size * ffn.config.n_groups if ffn.gate is not None else ffn.d_ff
    return 4.0 * ffn.d_model * d_ff


def gated_ffn_flops(ffn: GatedFFN, open_groups: float) -> float:
    """FLOPs per token of a gated FFN whose tokens compute ``open_groups`` groups on average.

    Counts the gate MLP and the two matmuls of the open groups, 2 FLOPs per multiply-add; biases and
    the activation are left out (they are O(d) per token).
    """
    gate = ffn.gate
    if gate is None:
        return dense_ffn_flops(ffn)
    width = gate.groups.in_features
    gate_flops = 2.0 * width * (ffn.n_groups + (1 if gate.skip is not None else 0))
    if gate.hidden is not None:
        gate_flops += 2.0 * ffn.d_model * width
    return gate_flops + 4.0 * ffn.d_model * ffn.group_size * open_groups


@dataclass
class LayerPruneReport:
    """What pruning did to one gated FFN."""

    name: str
    """Module name of the FFN in the model."""
    groups_before: int
    """Groups present before pruning."""
    groups_after: int
    """Groups kept."""
    removed_groups: list[int]
    """Original indices (as built) of the removed groups."""
    open_rate: list[float]
    """Calibration open rate of each group present before pruning."""
    params_before: int
    """Parameters of the FFN (with its gate) before pruning."""
    params_after: int
    """Parameters of the FFN (with its gate) after pruning."""
    flops_per_token_before: float
    """Active FLOPs per token on the calibration data before pruning (gate included)."""
    flops_per_token_after: float
    """Active FLOPs per token after pruning, from the kept groups' open rates (gate included)."""


@dataclass
class PruneReport:
    """Parameters and active FLOPs per token of a model before and after ``prune``."""

    layers: list[LayerPruneReport]
    """One entry per gated FFN."""
    min_activation: float
    """Open-rate threshold below which groups were removed."""
    n_tokens: int
    """Calibration tokens seen by the first gated FFN."""
    params_before: int
    """Parameters of the whole model before pruning."""
    params_after: int
    """Parameters of the whole model after pruning."""
    ffn_params_before: int
    """Parameters of all gated FFNs (gates included) before pruning."""
    ffn_params_after: int
    """Parameters of all gated FFNs (gates included) after pruning."""
    dense_flops_per_token: float
    """FLOPs per token of the same FFNs run densely at their built width (the baseline)."""
    active_flops_per_token_before: float
    """Measured active FFN FLOPs per token (sum over layers) before pruning."""
    active_flops_per_token_after: float
    """Active FFN FLOPs per token after pruning."""

    @property
    def ffn_params_removed(self) -> float:
        """Fraction of the gated FFNs' parameters removed."""
        return 1.0 - self.ffn_params_after / max(self.ffn_params_before, 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["ffn_params_removed"] = self.ffn_params_removed
        return out

    def summary(self) -> str:
        """A plain-text table: one row per layer, then the totals."""
        lines = [f"{'layer':<40} {'groups':>9} {'params':>21} {'MFLOPs/token':>17}"]
        for layer in self.layers:
            lines.append(
                f"{layer.name or '<model>':<40} {layer.groups_before:>4}->{layer.groups_after:<4}"
                f" {layer.params_before:>10}->{layer.params_after:<10}"
                f" {layer.flops_per_token_before / 1e6:>8.2f}->{layer.flops_per_token_after / 1e6:<8.2f}"
            )
        lines.append(
            f"model params {self.params_before} -> {self.params_after}; FFN params "
            f"{self.ffn_params_before} -> {self.ffn_params_after} (-{100 * self.ffn_params_removed:.1f}%)"
        )
        lines.append(
            f"FFN MFLOPs/token: dense {self.dense_flops_per_token / 1e6:.2f}, active "
            f"{self.active_flops_per_token_before / 1e6:.2f} -> {self.active_flops_per_token_after / 1e6:.2f}"
            f" (calibration: {self.n_tokens} tokens, min_activation={self.min_activation})"
        )
        return "\n".join(lines)
