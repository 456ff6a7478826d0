"""Models: encoders with heads. Forwards return typed outputs (logits, embeddings, auxiliary terms)."""

from hybridformer.heads import (
    ClassifierOutput,
    MaskedLMOutput,
    MLMHead,
    SequenceClassificationHead,
    TextClassifier,
    TextForMaskedLM,
)
from hybridformer.models.generate import GenerateOutput, GenerationConfig
from hybridformer.models.multimodal import MultimodalModel
from hybridformer.models.multimodal_config import HeadsConfig, MultimodalConfig
from hybridformer.models.multimodal_flavors import multimodal_base, multimodal_tiny
from hybridformer.models.outputs import ClassificationOutput, ContrastiveOutput, MultimodalOutput

__all__ = [
    "ClassifierOutput",
    "MaskedLMOutput",
    "MLMHead",
    "SequenceClassificationHead",
    "TextClassifier",
    "TextForMaskedLM",
    "ClassificationOutput",
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
