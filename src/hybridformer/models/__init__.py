"""Models: encoders with heads. Forwards return typed outputs (logits, embeddings, auxiliary terms),
never a task loss; objectives in :mod:`hybridformer.losses` compute the losses. Every model has
``init_weights()`` (see :mod:`hybridformer.initialization`)."""

from hybridformer.models.masked_lm import MLMHead, TextForMaskedLM
from hybridformer.models.outputs import ClassifierOutput, MaskedLMOutput
from hybridformer.models.text_classifier import SequenceClassificationHead, TextClassifier

__all__ = [
    "ClassifierOutput",
    "MaskedLMOutput",
    "MLMHead",
    "SequenceClassificationHead",
    "TextClassifier",
    "TextForMaskedLM",
]
