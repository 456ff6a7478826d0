"""The gate-rate loss: holds the expected fraction of open FFN groups at a target (SPEC §3).

The gated FFN computes it as its auxiliary term (``FFNOutput.aux_loss``) because only it sees the
gates' probabilities; models sum it into their output's ``aux_loss`` and every objective adds that
to its task loss. It lives with the gates (not with the objectives in ``losses/``, a layer above the
kernels) and depends on nothing but tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from hybridformer.sparsity.gating import GateDecision

__all__ = ["expected_active_fraction", "target_rate_loss"]


def expected_active_fraction(decision: GateDecision) -> Tensor:
    """Scalar, differentiable: E[fraction of (token, group) pairs computed] over the real tokens.

    A token computes group g with probability ``p_run * p_g`` (``p_run`` = 1 without layer skip), so
    the expectation is the mean over real tokens of ``p_run * mean_g p_g``. Padding is ignored.
    """
    valid = decision.valid.to(decision.group_probs.dtype)  # (B, N)
    per_token = decision.run_probs * decision.group_probs.mean(-1)  # (B, N)
    return (per_token * valid).sum() / valid.sum().clamp(min=1.0)


def target_rate_loss(expected_active: Tensor, target: float, weight: float = 1.0) -> Tensor:
    """``weight * (expected_active - target)**2``: pulls the batch's expected open rate to the target.

    Using the expectation (not the sampled hard gates) gives a low-variance gradient to every gate
    logit; penalising the batch mean (not each token) leaves tokens free to open more or fewer groups.

    Args:
        expected_active: scalar from :func:`expected_active_fraction`.
        target: the configured ``target_active``.
        weight: the configured ``loss_weight``.
    """
    return weight * (expected_active - target) ** 2
