"""Tiny decoders shared by the fusion and generation tests (imported by name: tests/fusion is on sys.path)."""

from __future__ import annotations

import torch

from hybridformer.attention import AttentionConfig
from hybridformer.fusion import DECODER_SELECTION, DecoderConfig, JointDecoder, ModalityTokens

DIMS = {"text": 24, "image": 16, "video": 20}


def attention_of(kind: str) -> AttentionConfig:
    """`kind` "hybrid": the decoders' selection (the scorer, which the batched ring decodes); "pooled":
    the pooled selection with 8-token pool blocks (so blocks close within a short generation);
    "compressed": blocks of 2."""
    if kind == "pooled":
        return AttentionConfig(kind="hybrid", window=4, global_k=2, selection="pooled", pool_block=8)
    if kind == "compressed":
        return AttentionConfig(kind="hybrid", window=4, global_k=2, selection="compressed", compress_block=2)
    return AttentionConfig(kind=kind, window=4, global_k=2, selection=DECODER_SELECTION)


def tiny_decoder_config(kind: str = "hybrid", dims: dict[str, int] | None = None, **overrides) -> DecoderConfig:
    dims = DIMS if dims is None else dims
    fields = dict(
        vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_positions=96, dropout=0.0,
        attention=attention_of(kind), bos_token_id=1, eos_token_id=2,
        text_dim=dims.get("text", 0), image_dim=dims.get("image", 0), video_dim=dims.get("video", 0),
    )
    fields.update(overrides)
    return DecoderConfig(**fields)


def tiny_decoder(kind: str = "hybrid", gate: float | None = 0.7, seed: int = 0, **overrides) -> JointDecoder:
    """A small eval-mode decoder; `gate` opens every cross-attention gate (None keeps them at 0)."""
    torch.manual_seed(seed)
    decoder = JointDecoder(tiny_decoder_config(kind, **overrides)).eval()
    if gate is not None:
        for block in decoder.blocks:
            if block.cross_attention is not None:
                torch.nn.init.constant_(block.cross_attention.gate, gate)
    return decoder


def mixed_context(batch_size: int = 3, seed: int = 1) -> dict[str, ModalityTokens]:
    """Example 0 text-only (no context), 1 image + text context, 2 video + text context (with padding)."""
    g = torch.Generator().manual_seed(seed)
    lengths = {"text": 6, "image": 4, "video": 5}
    has = {"text": [False, True, True], "image": [False, True, False], "video": [False, False, True]}
    context = {}
    for name, n in lengths.items():
        tokens = torch.randn(batch_size, n, DIMS[name], generator=g)
        mask = torch.tensor(has[name])[:, None].expand(batch_size, n).clone()
        if name == "text":
            mask[2, 4:] = False  # example 2's text context is shorter: right padding
        context[name] = ModalityTokens(tokens, mask)
    return context
