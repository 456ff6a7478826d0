"""Classification scores checked against scikit-learn on a fixed case (a class never predicted, one with no example)."""

from __future__ import annotations

import pytest
import torch

from hybridformer.evaluation import classification_report, plot_confusion

import sklearn.metrics as sklearn_metrics  # the reference (pinned in the Makefile)

NAMES = ["sport", "tech", "politics", "business"]
# "business" (3) has no true example and "politics" (2) is never predicted: zero_division cases.
LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 0, 1, 1, 0]
PREDS = [0, 1, 0, 1, 1, 0, 1, 3, 0, 1, 0, 3]


def test_report_matches_scikit_learn() -> None:
    report = classification_report(LABELS, PREDS, NAMES)
    labels = list(range(len(NAMES)))
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(LABELS, PREDS, labels=labels, zero_division=0)
    assert report.accuracy == pytest.approx(sklearn_metrics.accuracy_score(LABELS, PREDS), abs=1e-12)
    assert report.macro_f1 == pytest.approx(
        sklearn_metrics.f1_score(LABELS, PREDS, labels=labels, average="macro", zero_division=0), abs=1e-12
    )
    for k, name in enumerate(NAMES):
        scores = report.per_class[name]
        assert (scores.precision, scores.recall, scores.f1) == pytest.approx((p[k], r[k], f[k]), abs=1e-12)
        assert scores.support == s[k]
    assert report.confusion == sklearn_metrics.confusion_matrix(LABELS, PREDS, labels=labels).tolist()
    assert report.per_class["politics"].precision == 0.0 and report.per_class["business"].recall == 0.0


def test_confusion_png_and_bad_input(tmp_path) -> None:
    report = classification_report(torch.tensor(LABELS), torch.tensor(PREDS), NAMES)
    path = plot_confusion(report.confusion, NAMES, tmp_path / "c.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="predictions: shape"):
        classification_report([0, 1], [0], NAMES)
    with pytest.raises(ValueError, match="labels: no examples"):
        classification_report([], [], NAMES)
