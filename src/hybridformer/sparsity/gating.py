"""The gate: a light MLP that opens or closes each FFN neuron group per token.

Training samples hard 0/1 gates with the binary Gumbel-Softmax (a 2-way on/off relaxed Bernoulli
per group) and a straight-through estimator: the forward pass sees exact 0/1 values, the backward
pass the gradient of the relaxed sample. Inference uses deterministic gates (a probability
threshold, or the top-g groups of each token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.sparsity.config import SparsityConfig

__all__ = ["GateDecision", "SparseGate", "gumbel_sigmoid_st"]

_SKIP_INIT_LOGIT = 3.0
"""Initial logit of the layer-skip gate: tokens start by running the FFN (p = 0.95)."""


def gumbel_sigmoid_st(logits: Tensor, tau: float) -> Tensor:
    """Hard 0/1 samples of Bernoulli(sigmoid(logits)) with straight-through Gumbel-Softmax gradients.

    The 2-way Gumbel-Softmax over (on, off) logits (l, 0) is ``sigmoid((l + g1 - g0) / tau)``, and
    ``g1 - g0`` of two Gumbel(0, 1) draws is Logistic(0, 1): ``log u - log(1 - u)``. The hard sample
    is 1 where the relaxed one exceeds 1/2, so P(open) = sigmoid(l) at any temperature; ``tau`` only
    shapes the gradient.

    Args:
        logits: (...) open logits.
        tau: temperature, > 0.

    Returns:
        (...) tensor of exact 0/1 values whose gradient is that of the relaxed sample.
    """
    u = torch.rand_like(logits).clamp_(1e-6, 1.0 - 1e-6)
    soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)
    hard = (soft > 0.5).to(soft.dtype)
    # soft - soft.detach() is exactly 0 in the forward pass, so the output is exactly `hard`.
    return hard + (soft - soft.detach())


@dataclass
class GateDecision:
    """The gates of one FFN call."""

    group_gates: Tensor
    """(B, N, G) float, exact 0/1 per (token, group); straight-through gradients in training."""
    group_probs: Tensor
    """(B, N, G) open probabilities sigmoid(logits), differentiable."""
    run_gates: Tensor
    """(B, N) float, exact 0/1: 1 where the token runs the FFN. 0 for padding and for tokens the
    layer-skip gate skips; all real tokens run when ``layer_skip`` is off."""
    run_probs: Tensor
    """(B, N) probability of running the FFN (1 without ``layer_skip``), differentiable."""
    valid: Tensor
    """(B, N) bool, True for real (non-padding) tokens."""


class SparseGate(nn.Module):
    """Per-token open/close decisions for the G neuron groups of an FFN (and optionally the whole FFN).

    Submodules: ``hidden`` (d_model -> gate_hidden, only when ``gate_hidden > 0``), ``groups``
    (-> n_groups open logits) and ``skip`` (-> 1 run logit, only with ``layer_skip``).

    Args:
        d_model: width of the tokens the gate reads.
        n_groups: number of neuron groups G it switches.
        config: the sparsity settings (temperature schedule, inference mode, layer skip, widths).
    """

    def __init__(self, d_model: int, n_groups: int, config: SparsityConfig) -> None:
        super().__init__()
        self.config = config
        width = config.gate_hidden or d_model
        self.hidden = nn.Linear(d_model, config.gate_hidden) if config.gate_hidden else None
        self.groups = nn.Linear(width, n_groups)
        self.skip = nn.Linear(width, 1) if config.layer_skip else None
        self.temperature = config.tau_start
        self.target = config.target_start if config.target_start is not None else config.target_active
        """The open fraction the target-rate loss asks for now (``set_step`` follows the schedule)."""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Small random weights, and biases that start every group near the (starting) target open rate."""
        run_p = 1.0 / (1.0 + math.exp(-_SKIP_INIT_LOGIT)) if self.skip is not None else 1.0
        start = self.config.target_start if self.config.target_start is not None else self.config.target_active
        p = min(max(start / run_p, 0.01), 0.99)
        for layer in (self.hidden, self.groups, self.skip):
            if layer is not None:
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        nn.init.constant_(self.groups.bias, math.log(p / (1.0 - p)))
        if self.skip is not None:
            nn.init.constant_(self.skip.bias, _SKIP_INIT_LOGIT)

    def forward(self, x: Tensor, valid: Tensor) -> GateDecision:
        """Decide the gates of every token.

        Args:
            x: (B, N, d_model) tokens entering the FFN.
            valid: (B, N) bool, True for real tokens; padding never runs the FFN.

        Returns:
            GateDecision: sampled straight-through gates in training mode, deterministic ones in
            eval mode (``config.inference``).
        """
        features = F.gelu(self.hidden(x)) if self.hidden is not None else x
        logits = self.groups(features)  # (B, N, G)
        group_probs = torch.sigmoid(logits)
        valid_f = valid.to(x.dtype)
        if self.skip is None:
            run_logits = None
            run_probs = torch.ones_like(valid_f)
        else:
            run_logits = self.skip(features).squeeze(-1)  # (B, N)
            run_probs = torch.sigmoid(run_logits)
        if self.training:
            group_gates = gumbel_sigmoid_st(logits, self.temperature)
            run_gates = valid_f if run_logits is None else gumbel_sigmoid_st(run_logits, self.temperature)
        else:
            group_gates = self._deterministic(logits)
            run_gates = valid_f if run_logits is None else (run_logits > 0).to(x.dtype)
        return GateDecision(
            group_gates=group_gates,
            group_probs=group_probs,
            run_gates=run_gates * valid_f,
            run_probs=run_probs,
            valid=valid,
        )

    def _deterministic(self, logits: Tensor) -> Tensor:
        """(B, N, G) 0/1 inference gates from the open logits."""
        if self.config.inference == "threshold":
            # sigmoid(l) > t  <=>  l > logit(t); comparing logits avoids rounding near 0 and 1.
            t = self.config.threshold
            return (logits > math.log(t / (1.0 - t))).to(logits.dtype)
        k = min(self.config.top_g, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices  # (B, N, k)
        return torch.zeros_like(logits).scatter_(-1, top, 1.0)
