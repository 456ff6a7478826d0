"""Modality encoders: text (BERT/RoBERTa-style, loads Hugging Face checkpoints)."""

from hybridformer.encoders.text import Pooler, TextEncoder, TextEncoderOutput
from hybridformer.encoders.text_config import TextEncoderConfig

__all__ = ["Pooler", "TextEncoder", "TextEncoderConfig", "TextEncoderOutput"]
