"""Classification scores a user can act on: accuracy, macro-F1, per-class precision/recall/F1, confusion.

Definitions follow scikit-learn's ``classification_report`` with ``zero_division=0``: a class never
predicted has precision 0, a class with no true example has recall 0, and F1 is 0 where precision +
recall is 0. Macro-F1 is the unweighted mean of the per-class F1 over ``label_names``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

__all__ = ["ClassScores", "ClassificationReport", "classification_report", "confusion_matrix", "plot_confusion"]


@dataclass
class ClassScores:
    """One class's scores."""

    precision: float
    """Of the examples predicted as this class, the share that are."""
    recall: float
    """Of the examples of this class, the share predicted as it."""
    f1: float
    """Harmonic mean of precision and recall (0 when both are 0)."""
    support: int
    """Examples of this class."""


@dataclass
class ClassificationReport:
    """What :func:`classification_report` computes."""

    accuracy: float
    """Share of examples whose prediction is the label."""
    macro_f1: float
    """Unweighted mean of the per-class F1."""
    per_class: dict[str, ClassScores]
    """Scores by class name, in class order."""
    confusion: list[list[int]]
    """``confusion[i][j]``: examples of class i predicted as class j (rows: labels, columns: predictions)."""
    label_names: list[str]
    """Class names, the order of ``confusion``'s rows and columns."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def confusion_matrix(labels: Tensor, predictions: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    if labels.shape != predictions.shape:
        raise ValueError(f"predictions: shape {tuple(predictions.shape)} differs from labels {tuple(labels.shape)}")
    flat = labels.long() * num_classes + predictions.long()  # (N,) cell index
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def classification_report(
    labels: Sequence[int] | Tensor, predictions: Sequence[int] | Tensor, label_names: Sequence[str]
) -> ClassificationReport:
    """Score ``predictions`` against ``labels`` (class indices into ``label_names``)."""
    y = torch.as_tensor(labels, dtype=torch.long)
    p = torch.as_tensor(predictions, dtype=torch.long)
    if y.numel() == 0:
        raise ValueError("labels: no examples to score")
    c = len(label_names)
    cm = confusion_matrix(y, p, c).double()
    tp = cm.diagonal()
    predicted, actual = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), 0.0)
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), 0.0)
    per_class = {
        str(name): ClassScores(float(precision[k]), float(recall[k]), float(f1[k]), int(actual[k]))
        for k, name in enumerate(label_names)
    }
    return ClassificationReport(
        accuracy=float(tp.sum() / y.numel()),
        macro_f1=float(f1.mean()),
        per_class=per_class,
        confusion=cm.long().tolist(),
        label_names=[str(n) for n in label_names],
    )


def plot_confusion(confusion: Sequence[Sequence[int]], label_names: Sequence[str], path: str | Path,
                   title: str = "") -> Path:
    """Draw a confusion matrix (:attr:`ClassificationReport.confusion`: counts in the cells, rows = labels,
    columns = predictions) to a PNG with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hybridformer.io import atomic_write

    cm = torch.tensor(confusion, dtype=torch.long).view(len(label_names), len(label_names))
    n = len(label_names)
    size = max(4.0, 0.55 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm.numpy(), cmap="Blues")
    ax.set_xticks(range(n), list(label_names), rotation=45, ha="right")
    ax.set_yticks(range(n), list(label_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    ax.set_title(title)
    top = int(cm.max()) if cm.numel() else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if cm[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
