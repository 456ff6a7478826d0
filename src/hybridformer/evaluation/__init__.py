"""Evaluation metrics: classification reports (per-class scores, confusion) and VQA-v2 accuracy."""

from hybridformer.evaluation.classification import (
    ClassificationReport,
    ClassScores,
    classification_report,
    confusion_matrix,
    plot_confusion,
)
from hybridformer.evaluation.vqa import VQAAccuracy, normalize_answer, vqa_accuracy, vqa_question_accuracy

__all__ = [
    "ClassScores",
    "ClassificationReport",
    "VQAAccuracy",
    "classification_report",
    "confusion_matrix",
    "normalize_answer",
    "plot_confusion",
    "vqa_accuracy",
    "vqa_question_accuracy",
]
