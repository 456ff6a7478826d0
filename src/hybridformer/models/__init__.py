"""Models: encoders with heads. Forwards return typed outputs (logits, embeddings, auxiliary terms)."""

from hybridformer.heads import (
    ClassifierOutput,
    MaskedLMOutput,
    MLMHead,
    SequenceClassificationHead,
    TextClassifier,
    TextForMaskedLM,
)

__all__ = [
    "ClassifierOutput",
    "MaskedLMOutput",
    "MLMHead",
    "SequenceClassificationHead",
    "TextClassifier",
    "TextForMaskedLM",
]
