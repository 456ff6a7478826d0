"""Evaluation metrics and readers of official benchmark layouts (VQA-v2 accuracy for now)."""

from hybridformer.evaluation.vqa import VQAAccuracy, normalize_answer, vqa_accuracy, vqa_question_accuracy

__all__ = ["VQAAccuracy", "normalize_answer", "vqa_accuracy", "vqa_question_accuracy"]
