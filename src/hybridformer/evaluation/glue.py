"""GLUE's official metrics as pure functions: accuracy, F1 of the positive class, Matthews correlation,
Pearson and Spearman correlation (the definitions of scikit-learn's ``accuracy_score``, ``f1_score``,
``matthews_corrcoef`` and scipy's ``pearsonr`` / ``spearmanr``, which the GLUE baselines call).

=====================  ==========================================
task                   metrics (the first is the task's headline)
=====================  ==========================================
CoLA                   matthews
SST-2, QNLI, RTE, WNLI accuracy
MNLI                   accuracy (matched and mismatched apart)
MRPC, QQP              f1 (class 1 positive), accuracy
STS-B                  pearson, spearman
=====================  ==========================================
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["accuracy", "binary_f1", "matthews_correlation", "pearson", "spearman", "glue_scores"]


def _pair(y: Sequence[float], p: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.as_tensor(y, dtype=torch.float64), torch.as_tensor(p, dtype=torch.float64)
    if a.shape != b.shape or a.dim() != 1 or a.numel() == 0:
        raise ValueError(f"predictions: expected as many as labels (a non-empty list), got {tuple(b.shape)} "
                         f"for {tuple(a.shape)}")
    return a, b


def accuracy(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """Share of predictions equal to the label."""
    y, p = _pair(labels, predictions)
    return float((y == p).double().mean())


def binary_f1(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """F1 of class 1 (``2 tp / (2 tp + fp + fn)``; 0 when there is no positive at all)."""
    y, p = _pair(labels, predictions)
    tp = float(((y == 1) & (p == 1)).sum())
    wrong = float((y != p).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + wrong)


def matthews_correlation(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """Matthews correlation coefficient, multiclass form (Gorodkin's R_K, as scikit-learn computes it);
    0 when either side holds a single class."""
    y, p = _pair(labels, predictions)
    classes = torch.unique(torch.cat([y, p]))
    t_k = torch.stack([(y == c).sum() for c in classes]).double()  # true count per class
    p_k = torch.stack([(p == c).sum() for c in classes]).double()  # predicted count per class
    c, s = float((y == p).sum()), float(y.numel())
    denom = math.sqrt(s * s - float(p_k @ p_k)) * math.sqrt(s * s - float(t_k @ t_k))
    return 0.0 if denom == 0 else (c * s - float(t_k @ p_k)) / denom


def pearson(labels: Sequence[float], predictions: Sequence[float]) -> float:
    """Pearson correlation (NaN when either side is constant, as scipy returns)."""
    y, p = _pair(labels, predictions)
    y, p = y - y.mean(), p - p.mean()
    denom = math.sqrt(float(y @ y) * float(p @ p))
    return float("nan") if denom == 0 else float(y @ p) / denom


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing their mean rank (scipy's ``rankdata(method="average")``)."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    sorted_x = x[order]
    i, n = 0, x.numel()
    while i < n:
        j = i
        while j + 1 < n and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(labels: Sequence[float], predictions: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of the tie-averaged ranks."""
    y, p = _pair(labels, predictions)
    return pearson(_ranks(y).tolist(), _ranks(p).tolist())


def glue_scores(metric: str, labels: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
    """The official scores of a GLUE task whose ``metric`` is ``accuracy``, ``f1`` (F1 and accuracy),
    ``matthews`` or ``pearson`` (Pearson and Spearman); class indices or, for ``pearson``, scores."""
    if metric == "accuracy":
        return {"accuracy": accuracy(labels, predictions)}
    if metric == "f1":
        return {"f1": binary_f1(labels, predictions), "accuracy": accuracy(labels, predictions)}
    if metric == "matthews":
        return {"matthews": matthews_correlation(labels, predictions)}
    if metric == "pearson":
        return {"pearson": pearson(labels, predictions), "spearman": spearman(labels, predictions)}
    raise ValueError(f"metric: unknown GLUE metric {metric!r}; expected accuracy, f1, matthews or pearson")
