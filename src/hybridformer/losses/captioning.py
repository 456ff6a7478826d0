"""The joint decoder's text objectives: captioning (next-token prediction) and MLM on the fused text.

Captioning: the decoder reads ``[CLS] caption [SEP]`` with the image as context and predicts token
t+1 from tokens <= t; padding is never a target, and the [SEP] that ends a caption is (generation
stops on it).

MLM on the fused text (ALBEF's MLM, on our decoder): 15% of the caption's real, non-special tokens are
corrupted by :func:`~hybridformer.losses.mask_tokens` (80/10/10) and the decoder, reading the image
and the corrupted text, predicts each original token at its own position. Our decoder is causal, so
a target sees the image, the tokens before it and its own (corrupted) token, not the ones after it.

Both take an optional momentum ``teacher`` (ALBEF's distillation, :mod:`hybridformer.losses.momentum`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from hybridformer.losses._multimodal_batch import context_of, require
from hybridformer.losses.mlm import IGNORE_INDEX, mask_tokens, mlm_loss
from hybridformer.losses.output import LossOutput

__all__ = ["caption_targets", "caption_loss", "CaptionObjective", "FusedMLMObjective"]


def caption_targets(input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """(B, N) next-token targets: ``input_ids`` shifted left by one, -100 at padding and at the end."""
    targets = torch.full_like(input_ids, IGNORE_INDEX)
    targets[:, :-1] = input_ids[:, 1:]
    if attention_mask is not None:
        targets[:, :-1][~attention_mask[:, 1:].bool()] = IGNORE_INDEX
    return targets


def caption_loss(logits: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Mean next-token cross-entropy over the real targets: logits (B, N, V), ids and mask (B, N)."""
    if logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits: expected (B, N, V) with (B, N) = {tuple(input_ids.shape)}, got {tuple(logits.shape)}")
    return mlm_loss(logits, caption_targets(input_ids, attention_mask))


def _token_loss(logits: Tensor, targets: Tensor, teacher: Any, ids: Tensor, mask: Tensor | None,
                batch: Mapping[str, Any]) -> Tensor:
    """Cross-entropy of the decoder's ``logits`` against ``targets``; with a momentum ``teacher``
    (:class:`~hybridformer.losses.momentum.MomentumTeacher`) mixed with its soft targets on the same input."""
    if teacher is None:
        return mlm_loss(logits, targets)
    from hybridformer.losses.momentum import distilled_token_loss

    with torch.no_grad():
        teacher_logits = teacher.model(ids, mask, **context_of(batch)).logits
    return distilled_token_loss(logits, targets, teacher_logits, teacher.alpha)


class CaptionObjective(nn.Module):
    """Captioning on an image-text (or video-text) batch. ``loss`` = next-token cross-entropy + the
    decoder's ``aux_loss``. Metrics: ``caption_loss``, ``caption_accuracy`` (next-token top-1)."""

    def forward(self, model: nn.Module, batch: Mapping[str, Any], teacher: Any = None) -> LossOutput:
        ids = require(batch, "input_ids", "CaptionObjective")
        mask = batch.get("attention_mask")
        out = model(ids, mask, **context_of(batch))
        targets = caption_targets(ids, mask)
        loss = _token_loss(out.logits, targets, teacher, ids, mask, batch)
        with torch.no_grad():
            real = targets != IGNORE_INDEX
            accuracy = ((out.logits.argmax(-1) == targets) & real).sum() / real.sum().clamp(min=1)
        return LossOutput(loss=loss + out.aux_loss, metrics={"caption_loss": loss.detach(), "caption_accuracy": accuracy})


class FusedMLMObjective(nn.Module):
    """MLM on the decoder's fused text (see the module docstring).

    Args:
        mask_token_id: the tokenizer's [MASK] id.
        vocab_size: ids random replacements are drawn from.
        special_token_ids: ids never masked ([CLS], [SEP], [PAD], ...).
        mlm_probability: share of eligible tokens that become targets.
    """

    def __init__(self, mask_token_id: int, vocab_size: int, special_token_ids: Sequence[int],
                 mlm_probability: float = 0.15) -> None:
        super().__init__()
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability: must be in (0, 1), got {mlm_probability}")
        self.mask_token_id, self.vocab_size = mask_token_id, vocab_size
        self.special_token_ids, self.mlm_probability = list(special_token_ids), mlm_probability

    def forward(self, model: nn.Module, batch: Mapping[str, Any], teacher: Any = None) -> LossOutput:
        ids = require(batch, "input_ids", "FusedMLMObjective")
        mask = batch.get("attention_mask")
        masked = mask_tokens(ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                             special_token_ids=self.special_token_ids, attention_mask=mask,
                             mlm_probability=self.mlm_probability)
        out = model(masked.input_ids, mask, **context_of(batch))
        loss = _token_loss(out.logits, masked.labels, teacher, masked.input_ids, mask, batch)
        with torch.no_grad():
            real = masked.labels != IGNORE_INDEX
            accuracy = ((out.logits.argmax(-1) == masked.labels) & real).sum() / real.sum().clamp(min=1)
        return LossOutput(loss=loss + out.aux_loss, metrics={"mlm_loss": loss.detach(), "mlm_accuracy": accuracy})
