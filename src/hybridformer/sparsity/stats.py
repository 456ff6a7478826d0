"""Per-layer gate statistics, returned with every gated FFN call for logging and calibration."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hybridformer.sparsity.gating import GateDecision

__all__ = ["GateStats", "gate_stats"]


@dataclass
class GateStats:
    """What the gates of one FFN call did, over the real (non-padding) tokens. Tensors are detached."""

    active_fraction: Tensor
    """Scalar: fraction of (token, group) pairs computed (token runs the FFN and the group is open)."""
    expected_active: Tensor
    """Scalar: the same fraction in expectation under the gate probabilities (what the loss holds)."""
    gate_entropy: Tensor
    """Scalar: mean binary entropy (nats) of the group open probabilities; ln 2 = undecided, 0 = sure."""
    group_open_rate: Tensor
    """(G,) fraction of tokens that computed each group (what ``prune`` measures)."""
    skip_rate: Tensor | None
    """Scalar: fraction of tokens the layer-skip gate skipped; None without ``layer_skip``."""
    n_tokens: Tensor
    """Scalar long: number of real tokens the statistics are over."""
    temperature: float
    """Gumbel-Softmax temperature the gates were sampled at (training) or would be (eval)."""

    def scalars(self) -> dict[str, float]:
        """The scalar statistics as Python floats, for a logger (synchronises with the device)."""
        out = {
            "active_fraction": float(self.active_fraction),
            "expected_active": float(self.expected_active),
            "gate_entropy": float(self.gate_entropy),
            "temperature": self.temperature,
        }
        if self.skip_rate is not None:
            out["skip_rate"] = float(self.skip_rate)
        return out


def gate_stats(decision: GateDecision, expected_active: Tensor, temperature: float, skipping: bool) -> GateStats:
    """Summarise a GateDecision (few, batched reductions: this runs on every call, at batch 1 too).

    Args:
        decision: the gates of one call.
        expected_active: scalar from ``expected_active_fraction(decision)`` (already computed for the loss).
        temperature: the gate's current temperature.
        skipping: whether the layer-skip gate exists (sets ``skip_rate``).
    """
    with torch.no_grad():
        valid = decision.valid.unsqueeze(-1).to(decision.group_probs.dtype)  # (B, N, 1)
        n = valid.sum()
        count = n.clamp(min=1.0)
        # run_gates is 0 on padding, so `computed` counts real tokens only.
        computed = decision.group_gates * decision.run_gates.unsqueeze(-1)  # (B, N, G)
        p = decision.group_probs
        entropy = torch.special.entr(p) + torch.special.entr(1.0 - p)  # (B, N, G) binary entropy, nats
        open_rate = computed.sum((0, 1)) / count  # (G,)
        skip_rate = 1.0 - decision.run_gates.sum() / count if skipping else None
        return GateStats(
            active_fraction=open_rate.mean(),
            expected_active=expected_active.detach(),
            gate_entropy=(entropy * valid).sum() / (count * p.shape[-1]),
            group_open_rate=open_rate,
            skip_rate=skip_rate,
            n_tokens=n.long(),
            temperature=temperature,
        )
