"""A small multimodal model for the objective tests (seconds on a loaded CPU)."""

from __future__ import annotations

import torch

from hybridformer.attention import AttentionConfig
from hybridformer.encoders.image import ImageEncoderConfig
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.fusion import DecoderConfig
from hybridformer.models.multimodal_config import HeadsConfig, MultimodalConfig
from hybridformer.models.multimodal_flavors import build_initialised

VOCAB = 50


def small_model(seed: int = 0):
    d = 16
    text = TextEncoderConfig(vocab_size=VOCAB, d_model=d, n_layers=1, n_heads=2, d_ff=32, max_positions=16,
                             pooler=False, attention=AttentionConfig(kind="full"))
    decoder = DecoderConfig(vocab_size=VOCAB, d_model=d, n_layers=1, n_heads=2, d_ff=32, max_positions=16,
                            attention=AttentionConfig(kind="full", causal=True), text_dim=d, image_dim=d,
                            bos_token_id=1, eos_token_id=2, pad_token_id=0, dropout=0.0)
    config = MultimodalConfig(text=text, decoder=decoder, image=ImageEncoderConfig(depth=18, in_channels=1, d_model=d, image_size=32),
                              heads=HeadsConfig(embed_dim=8, dropout=0.0))
    torch.manual_seed(seed)
    return build_initialised(config)


def small_batch(batch: int = 4, length: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch, length), generator=g)
    ids[:, 0], ids[:, -1] = 1, 2
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, -2:] = 0  # one padded row
    ids[0, -2:] = 0
    ids[0, -3] = 2
    return {"input_ids": ids, "attention_mask": mask, "images": torch.rand(batch, 1, 32, 32, generator=g),
            "labels": torch.arange(batch)}
