"""Image-text matching (ITM) with hard negatives mined from the contrastive similarities (ALBEF).

For each image, one negative text is drawn with probability ``softmax(sim_i2t)`` over the other
texts (the positive's weight zeroed), and for each text one negative image from ``softmax(sim_t2i)``:
negatives the contrastive embeddings find similar, so the fused decoder must learn to tell them
apart. Texts identical to the positive (templated captions repeat) get weight 0 too: they are not
negatives. The decoder then scores B positive pairs (label 1) and 2B negatives (label 0) with the
model's two-way ITM head, in one pass of 3B rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses._multimodal_batch import context_of, require
from hybridformer.losses.output import LossOutput

__all__ = ["negative_weights", "sample_hard_negatives", "itm_loss", "MatchingBatch", "matching_batch", "MatchingObjective"]


def negative_weights(similarity: Tensor, excluded: Tensor | None = None) -> Tensor:
    """ALBEF's sampling weights: row-wise softmax of ``similarity`` (B, B) with the diagonal (and
    ``excluded``, bool (B, B)) set to 0. A row with no weight left gets uniform weights over its
    off-diagonal entries."""
    batch = similarity.shape[0]
    if similarity.dim() != 2 or similarity.shape[1] != batch:
        raise ValueError(f"similarity: expected a square (B, B) matrix, got {tuple(similarity.shape)}")
    if batch < 2:
        raise ValueError("similarity: hard negatives need a batch of at least 2 pairs")
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=similarity.device)
    keep = off_diagonal if excluded is None else off_diagonal & ~excluded
    weights = torch.softmax(similarity.detach().float(), dim=1) * keep
    empty = weights.sum(1, keepdim=True) <= 0  # (B, 1)
    return torch.where(empty, off_diagonal.float(), weights)


def sample_hard_negatives(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One index per row drawn from the rows of ``weights`` (B, B) -> (B,) long."""
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def itm_loss(itm_logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the two-way ITM logits (R, 2) against 0/1 labels (R,)."""
    return F.cross_entropy(itm_logits.float(), labels)


@dataclass
class MatchingBatch:
    """The 3B pairs ITM scores: B positives then B (image, negative text) then B (negative image, text)."""

    input_ids: Tensor
    """(3B, N) texts."""
    attention_mask: Tensor
    """(3B, N) their masks."""
    context: dict[str, Tensor]
    """The context tensors (images and their masks), 3B rows."""
    labels: Tensor
    """(3B,) 1 for the positives, 0 for the negatives."""


def matching_batch(batch: Mapping[str, Any], similarity: Tensor, generator: torch.Generator | None = None) -> MatchingBatch:
    """Positives and ALBEF hard negatives of ``batch`` given the image->text similarities (B, B)."""
    ids = require(batch, "input_ids", "MatchingObjective")
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    same_text = (ids.unsqueeze(1) == ids.unsqueeze(0)).all(-1) & (mask.unsqueeze(1) == mask.unsqueeze(0)).all(-1)
    neg_text = sample_hard_negatives(negative_weights(similarity, same_text), generator)  # (B,) per image
    neg_image = sample_hard_negatives(negative_weights(similarity.T, same_text), generator)  # (B,) per text
    rows = torch.arange(ids.shape[0], device=ids.device)
    text_rows = torch.cat([rows, neg_text, rows])  # (3B,)
    image_rows = torch.cat([rows, rows, neg_image])  # (3B,)
    context = {k: v[image_rows] for k, v in context_of(batch).items()}
    labels = torch.cat([torch.ones_like(rows), torch.zeros_like(rows), torch.zeros_like(rows)])
    return MatchingBatch(ids[text_rows], mask[text_rows], context, labels)


class MatchingObjective(nn.Module):
    """ITM with hard negatives. Without ``similarity`` given, the similarities come from the model's
    contrastive embeddings (computed without gradient). ``loss`` = ITM cross-entropy + the decoder's
    ``aux_loss``. Metrics: ``itm_loss``, ``itm_accuracy``."""

    def forward(self, model: nn.Module, batch: Mapping[str, Any], similarity: Tensor | None = None) -> LossOutput:
        if similarity is None:
            with torch.no_grad():
                emb = model.contrastive(require(batch, "input_ids", "MatchingObjective"), batch.get("attention_mask"),
                                        require(batch, "images", "MatchingObjective"))
                similarity = emb.image_embeddings @ emb.text_embeddings.T  # (B, B)
        pairs = matching_batch(batch, similarity)
        out = model(pairs.input_ids, pairs.attention_mask, **pairs.context)
        loss = itm_loss(out.itm_logits, pairs.labels)
        with torch.no_grad():
            accuracy = (out.itm_logits.argmax(1) == pairs.labels).float().mean()
        return LossOutput(loss=loss + out.aux_loss, metrics={"itm_loss": loss.detach(), "itm_accuracy": accuracy})
