"""The gate losses: the target rate (expected fraction of open FFN groups) and group polarization."""

from __future__ import annotations

import torch
from torch import Tensor

from hybridformer.sparsity.gating import GateDecision

__all__ = ["expected_active_fraction", "expected_group_usage", "polarization_loss", "target_rate_loss"]


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


def expected_group_usage(decision: GateDecision) -> Tensor:
    """(G,) differentiable: each group's expected open rate over the real tokens (``p_run * p_g``)."""
    valid = decision.valid.to(decision.group_probs.dtype)  # (B, N)
    per_group = (decision.run_probs * valid).unsqueeze(-1) * decision.group_probs  # (B, N, G)
    return per_group.sum((0, 1)) / valid.sum().clamp(min=1.0)


def polarization_loss(usage: Tensor, target: float, weight: float) -> Tensor:
    """``weight * mean_g |u_g - z_g|``: how far the groups' expected open rates ``usage`` (G,) are
    from the all-or-nothing pattern ``z`` that opens the ``round(target * G)`` most used groups
    always and the others never.

    ``z`` is recomputed from the current usage each call and held fixed, so the gradient pushes the
    most used groups toward always-open and the rest toward never-open (a polarization regularizer,
    cf. Zhuang et al. 2020, on gate usage); the loss is 0 exactly at such a pattern. The target rate
    is then met by groups the layer hardly ever opens, which pruning removes at little cost, rather
    than by every group closing for a share of the tokens. Pushing toward a pattern with the
    target's count (rather than away from 1/2 or from the mean) keeps the open fraction at the target.
    """
    groups = usage.shape[0]
    keep = min(max(round(target * groups), 0), groups)
    pattern = torch.zeros_like(usage)
    pattern[usage.detach().topk(keep).indices] = 1.0
    return weight * (usage - pattern).abs().mean()
