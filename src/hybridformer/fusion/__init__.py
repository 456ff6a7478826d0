"""Multimodal fusion (SPEC §4): gated cross-modal attention and the joint autoregressive decoder."""

from hybridformer.fusion.cross_modal import (
    MODALITIES,
    CrossModalAttention,
    CrossModalConfig,
    CrossModalKV,
    ModalityTokens,
    stack_kv,
)
from hybridformer.fusion.decoder import DECODER_SELECTION, DecoderBlock, DecoderBlockOutput, DecoderConfig
from hybridformer.fusion.joint_decoder import DecoderOutput, JointDecoder

__all__ = [
    "DECODER_SELECTION",
    "MODALITIES",
    "CrossModalAttention",
    "CrossModalConfig",
    "CrossModalKV",
    "DecoderBlock",
    "DecoderBlockOutput",
    "DecoderConfig",
    "DecoderOutput",
    "JointDecoder",
    "ModalityTokens",
    "stack_kv",
]
