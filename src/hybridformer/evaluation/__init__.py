"""Evaluation metrics as pure functions: classification reports (per-class scores, confusion), VQA-v2
accuracy and answer extraction, retrieval recall@k. Recipes run the models and call these."""

from hybridformer.evaluation.classification import (
    ClassificationReport,
    ClassScores,
    classification_report,
    confusion_matrix,
    plot_confusion,
)
from hybridformer.evaluation.retrieval import chance_recall_at_k, recall_at_k
from hybridformer.evaluation.vqa import VQAAccuracy, extract_answer, normalize_answer, vqa_accuracy, vqa_question_accuracy

__all__ = [
    "chance_recall_at_k",
    "extract_answer",
    "recall_at_k",
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
