"""Models: encoders with heads. Forwards return typed outputs (logits, embeddings, auxiliary terms),
never a task loss; objectives in :mod:`hybridformer.losses` compute the losses. Every model has
``init_weights()`` (see :mod:`hybridformer.initialization`)."""

from hybridformer.models.masked_lm import MLMHead, TextForMaskedLM
from hybridformer.models.outputs import ClassifierOutput, MaskedLMOutput
from hybridformer.models.text_classifier import SequenceClassificationHead, TextClassifier
from hybridformer.models.generate import GenerateOutput, GenerationConfig
from hybridformer.models.multimodal import MultimodalModel
from hybridformer.models.multimodal_config import HeadsConfig, MultimodalConfig
from hybridformer.models.multimodal_flavors import multimodal_base, multimodal_tiny
from hybridformer.models.outputs import ContrastiveOutput, MultimodalOutput

__all__ = [
    "ClassifierOutput",
    "MaskedLMOutput",
    "MLMHead",
    "SequenceClassificationHead",
    "TextClassifier",
    "TextForMaskedLM",
    "ContrastiveOutput",
    "GenerateOutput",
    "GenerationConfig",
    "HeadsConfig",
    "MultimodalConfig",
    "MultimodalModel",
    "MultimodalOutput",
    "multimodal_base",
    "multimodal_tiny",
]
