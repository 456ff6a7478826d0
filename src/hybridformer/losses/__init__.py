"""Training objectives, outside the models: each a function plus a Module called as
``objective(model, batch) -> LossOutput`` (loss plus named metrics).

    ClassificationObjective   cross-entropy on class labels            (classification.py)
    MLMObjective              BERT's masked language modelling          (mlm.py)
    DistillationObjective     a student on a frozen teacher's logits    (distill.py)
    GateDistillObjective      gated FFNs on the full-width network      (gate_distill.py)
    ContrastiveObjective      image-text InfoNCE, learnable temperature (contrastive.py)
    MatchingObjective         image-text matching, hard negatives       (matching.py)
    CaptionObjective          the decoder's next-token loss             (captioning.py)
    FusedMLMObjective         MLM on the decoder's fused text           (captioning.py)
    MultiTaskObjective        a weighted sum logging every term         (multitask.py)

The FFN gates' rate term is the gated FFN's own auxiliary term (``hybridformer.sparsity.gate_rate``).
Names are imported lazily, so importing one objective does not import every other's dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "LABELS": "output",
    "LossOutput": "output",
    "Objective": "output",
    "model_inputs": "output",
    "require_labels": "output",
    "ClassificationObjective": "classification",
    "classification_loss": "classification",
    "check_class_labels": "classification",
    "IGNORE_INDEX": "mlm",
    "MaskedTokens": "mlm",
    "MLMLoss": "mlm",
    "MLMLossOutput": "mlm",
    "MLMObjective": "mlm",
    "mask_tokens": "mlm",
    "mlm_loss": "mlm",
    "DistillationLoss": "distill",
    "DistillationObjective": "distill",
    "distillation_loss": "distill",
    "GateDistillConfig": "gate_distill",
    "ContrastiveConfig": "contrastive",
    "ContrastiveObjective": "contrastive",
    "contrastive_loss": "contrastive",
    "gather_with_grad": "contrastive",
    "gather_rows": "contrastive",
    "MatchingObjective": "matching",
    "matching_batch": "matching",
    "negative_weights": "matching",
    "itm_loss": "matching",
    "CaptionObjective": "captioning",
    "FusedMLMObjective": "captioning",
    "caption_loss": "captioning",
    "caption_targets": "captioning",
    "CaptionDistillationObjective": "caption_distill",
    "MultiTaskObjective": "multitask",
    "MomentumConfig": "momentum",
    "MomentumTeacher": "momentum",
    "ema_update": "momentum",
    "distilled_token_loss": "momentum",
    "soft_contrastive_targets": "momentum",
    "RegressionObjective": "regression",
    "regression_loss": "regression",
    "VQAObjective": "multimodal_tasks",
    "VQAAnswerLMObjective": "multimodal_tasks",
    "answer_sequences": "multimodal_tasks",
    "ImageClassificationObjective": "multimodal_tasks",
    "VideoClassificationObjective": "multimodal_tasks",
    "vqa_loss": "multimodal_tasks",
    "GateDistillObjective": "gate_distill",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hybridformer.losses' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hybridformer.losses.{module}"), name)
