"""Flavors of the multimodal model, as builder functions (torchmultimodal's style).

- :func:`multimodal_tiny`: d_model 128, 2-layer text encoder and decoder with hybrid attention, and
  one-block-per-stage torchvision trunks cut after layer3 (``ResNet(BasicBlock, [1, 1, 1, 1])``, 1.23M;
  mc3's ``VideoResNet`` with ``layers=[1, 1, 1, 1]``, 1.40M): 11.75M parameters (10.25M without video),
  7.81M of them the two 30,522-word tables. For tests, the demo and trying the CLI.
  Randomly initialised (no CNN weights ship offline); the text encoder can start from the bundled
  MiniLM instead (``text_encoder=minilm_path()``).
- :func:`multimodal_base`: the article's sizes: a RoBERTa-base-sized text encoder, ResNet-152, r3d_18,
  a 12-layer decoder of width 768. Built (on the meta device in tests) and counted, never trained here.

Both follow the meta-device contract: ``with torch.device("meta"): m = build_multimodal(config)``, then
``m.to_empty(device=d); torch.manual_seed(s); m.init_weights()`` equals ``torch.manual_seed(s); flavor()``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hybridformer.attention import AttentionConfig
from hybridformer.encoders.image import ImageEncoderConfig
from hybridformer.encoders.text import TextEncoder
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.encoders.video import VideoEncoderConfig
from hybridformer.fusion import DECODER_SELECTION, DecoderConfig
from hybridformer.initialization import allocating
from hybridformer.models.multimodal import MultimodalModel
from hybridformer.models.multimodal_checkpoint import build_multimodal
from hybridformer.models.multimodal_config import HeadsConfig, MultimodalConfig

__all__ = ["tiny_config", "base_config", "multimodal_tiny", "multimodal_base", "build_initialised"]

BERT_VOCAB = 30522  # the bundled MiniLM's WordPiece vocabulary: [PAD]=0, [CLS]=101, [SEP]=102
ROBERTA_VOCAB = 50265  # RoBERTa's BPE: <s>=0, <pad>=1, </s>=2


def tiny_config(heads: HeadsConfig | None = None, *, video: bool = True) -> MultimodalConfig:
    """The tiny flavor's config (BERT WordPiece vocabulary, 32×32 images, 8-frame 32×32 clips)."""
    d = 128
    text = TextEncoderConfig(
        vocab_size=BERT_VOCAB, d_model=d, n_layers=2, n_heads=4, d_ff=4 * d, max_positions=128, pooler=False,
        attention=AttentionConfig(kind="hybrid", window=32, global_k=8),
    )
    # one block per stage, three stages: a 32×32 image -> 2×2 tokens, an 8×32×32 clip -> 8×4×4
    image = ImageEncoderConfig(depth=10, stages=3, in_channels=3, d_model=d, image_size=32)
    clips = VideoEncoderConfig(arch="mc3_18", depth=10, stages=3, in_channels=3, d_model=d, num_frames=8,
                               frame_size=32) if video else None
    decoder = DecoderConfig(
        vocab_size=BERT_VOCAB, d_model=d, n_layers=2, n_heads=4, d_ff=4 * d, max_positions=1024,
        attention=AttentionConfig(kind="hybrid", window=32, global_k=16, causal=True, selection=DECODER_SELECTION),
        text_dim=d, image_dim=d, video_dim=d if video else 0, bos_token_id=101, eos_token_id=102, pad_token_id=0,
    )
    return MultimodalConfig(text=text, decoder=decoder, image=image, video=clips, heads=heads or HeadsConfig(embed_dim=d))


def base_config(heads: HeadsConfig | None = None) -> MultimodalConfig:
    """The article's sizes: RoBERTa-base text encoder, ResNet-152, r3d_18, 12-layer decoder, width 768."""
    d = 768
    text = TextEncoderConfig(
        vocab_size=ROBERTA_VOCAB, d_model=d, n_layers=12, n_heads=12, d_ff=3072, max_positions=512,
        position_offset=2, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5,
        attention=AttentionConfig(kind="hybrid", window=128, global_k=64),
    )
    decoder = DecoderConfig(
        vocab_size=ROBERTA_VOCAB, d_model=d, n_layers=12, n_heads=12, d_ff=3072, max_positions=1024,
        attention=AttentionConfig(kind="hybrid", window=128, global_k=64, causal=True, selection=DECODER_SELECTION),
        text_dim=d, image_dim=d, video_dim=d, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    return MultimodalConfig(
        text=text, decoder=decoder, image=ImageEncoderConfig(depth=152, d_model=d),
        video=VideoEncoderConfig(arch="r3d_18", d_model=d), heads=heads or HeadsConfig(embed_dim=256),
    )


def build_initialised(config: MultimodalConfig) -> MultimodalModel:
    """Build a model without drawing random numbers, then ``init_weights()``: the result equals a
    meta-device build + ``to_empty`` + ``init_weights`` under the same seed."""
    with allocating():
        model = build_multimodal(config)
    model.init_weights()
    return model


def multimodal_tiny(
    heads: HeadsConfig | None = None, *, text_encoder: str | Path | None = None, video: bool = True
) -> MultimodalModel:
    """The tiny model, randomly initialised (see the module docstring).

    Args:
        heads: the task heads (default: the contrastive projections and matching head only).
        text_encoder: a local BERT/RoBERTa folder (e.g. the bundled MiniLM, ``data.sources.minilm_path()``)
            to start the text encoder from; the decoder then reads its width and shares its vocabulary.
        video: include the video encoder (mc3, one block per stage, to layer3).
    """
    config = tiny_config(heads, video=video)
    pretrained = None
    if text_encoder is not None:
        pretrained = TextEncoder.from_pretrained(text_encoder)
        text = pretrained.config
        config = dataclasses.replace(
            config, text=text,
            decoder=dataclasses.replace(config.decoder, vocab_size=text.vocab_size, text_dim=text.d_model),
        )
    model = build_initialised(config)
    if pretrained is not None:
        model.text_encoder.load_state_dict(pretrained.state_dict())
    return model


def multimodal_base(heads: HeadsConfig | None = None) -> MultimodalModel:
    """The base model (hundreds of millions of parameters): build it under ``torch.device("meta")``
    to count it without memory."""
    return build_initialised(base_config(heads))
