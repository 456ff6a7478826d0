"""Modality encoders: text (BERT/RoBERTa-style, loads Hugging Face checkpoints), images (torchvision
ResNet) and video (torchvision 3-D ResNets), each returning tokens of the model width."""

from hybridformer.encoders.feature_tokens import VisionEncoderOutput, sincos_position_embedding
from hybridformer.encoders.image import ImageEncoder, ImageEncoderConfig, ImageEncoderOutput
from hybridformer.encoders.text import Pooler, TextEncoder, TextEncoderOutput
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.encoders.video import VideoEncoder, VideoEncoderConfig, VideoEncoderOutput

__all__ = [
    "ImageEncoder",
    "ImageEncoderConfig",
    "ImageEncoderOutput",
    "Pooler",
    "TextEncoder",
    "TextEncoderConfig",
    "TextEncoderOutput",
    "VideoEncoder",
    "VideoEncoderConfig",
    "VideoEncoderOutput",
    "VisionEncoderOutput",
    "sincos_position_embedding",
]
