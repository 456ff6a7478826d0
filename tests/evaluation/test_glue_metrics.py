"""GLUE's official metrics against scikit-learn and scipy on fixed cases."""

from __future__ import annotations

import math

import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from hybridformer.evaluation.glue import accuracy, binary_f1, glue_scores, matthews_correlation, pearson, spearman

LABELS = [0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
PREDS = [0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1]
THREE_Y = [0, 1, 2, 2, 1, 0, 2, 1, 0, 2]
THREE_P = [0, 2, 2, 1, 1, 0, 2, 0, 0, 2]
SCORES = [0.0, 1.2, 2.5, 3.8, 5.0, 4.2, 2.5, 0.6, 3.3, 1.9]
OUTPUTS = [0.3, 1.0, 2.9, 3.1, 4.1, 4.4, 2.0, 0.9, 3.3, 2.5]


def test_accuracy_f1_matthews_equal_scikit_learn():
    assert accuracy(LABELS, PREDS) == pytest.approx(accuracy_score(LABELS, PREDS))
    assert binary_f1(LABELS, PREDS) == pytest.approx(f1_score(LABELS, PREDS))
    assert matthews_correlation(LABELS, PREDS) == pytest.approx(matthews_corrcoef(LABELS, PREDS))
    assert matthews_correlation(THREE_Y, THREE_P) == pytest.approx(matthews_corrcoef(THREE_Y, THREE_P))
    # degenerate cases: one class predicted -> 0 (scikit-learn too); no positive at all -> F1 0
    assert matthews_correlation(LABELS, [1] * len(LABELS)) == matthews_corrcoef(LABELS, [1] * len(LABELS)) == 0.0
    assert binary_f1([0, 0], [0, 0]) == 0.0


def test_pearson_and_spearman_equal_scipy_with_ties():
    assert pearson(SCORES, OUTPUTS) == pytest.approx(pearsonr(SCORES, OUTPUTS)[0], abs=1e-12)
    assert spearman(SCORES, OUTPUTS) == pytest.approx(spearmanr(SCORES, OUTPUTS)[0], abs=1e-12)  # 2.5 twice
    tied = [1.0, 1.0, 2.0, 2.0, 2.0, 3.0]
    assert spearman(tied, [5.0, 4.0, 4.0, 1.0, 2.0, 0.0]) == pytest.approx(spearmanr(tied, [5, 4, 4, 1, 2, 0])[0])
    assert math.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_glue_scores_name_each_tasks_metrics():
    assert set(glue_scores("f1", LABELS, PREDS)) == {"f1", "accuracy"}
    assert glue_scores("matthews", LABELS, PREDS)["matthews"] == pytest.approx(matthews_corrcoef(LABELS, PREDS))
    assert set(glue_scores("pearson", SCORES, OUTPUTS)) == {"pearson", "spearman"}
    with pytest.raises(ValueError, match="metric"):
        glue_scores("bleu", LABELS, PREDS)
    with pytest.raises(ValueError, match="predictions"):
        accuracy([0, 1], [0])
