"""Image-text matching (ITM) with hard negatives mined from the contrastive similarities (ALBEF).

For each image, one negative text is drawn with probability ``softmax(sim_i2t)`` over the other
texts (the positive's weight zeroed), and for each text one negative image from ``softmax(sim_t2i)``:
negatives the contrastive embeddings find similar, so the fused decoder must learn to tell them
apart. Texts identical to the positive (templated captions repeat) get weight 0 too: they are not
negatives. The decoder then scores B positive pairs (label 1) and 2B negatives (label 0) with the
model's two-way ITM head, in one pass of 3B rows.

Under data parallelism the negatives come from the whole gathered batch, as in one process: every
process gathers the batch's texts and images (without gradient) and draws the negatives of *every*
global row from the global similarities with the same random stream (the processes' generators
are seeded alike), then keeps its own rows. The draws are then those of one process on the
concatenated batch, and a negative may be another process's text or image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses._multimodal_batch import context_of, require
from hybridformer.losses.contrastive import gather_rows, gather_with_grad, group_rank
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


def matching_batch(batch: Mapping[str, Any], similarity: Tensor, generator: torch.Generator | None = None, *,
                   offset: int = 0, group: dist.ProcessGroup | None = None) -> MatchingBatch:
    """Positives and ALBEF hard negatives of this process's ``batch`` (B rows).

    Args:
        batch: this process's rows (``input_ids``, ``attention_mask``, the context).
        similarity: (G, G) image->text similarities of the global batch (G = B in one process).
        generator: the random stream of the draws (None = torch's global one).
        offset: the global row of this process's first row.
        group: the data-parallel group whose batches make the global one (None = the default group).
    """
    ids = require(batch, "input_ids", "MatchingObjective")
    mask = batch.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    all_ids, all_mask = gather_rows(ids, group), gather_rows(mask, group)  # (G, N)
    if tuple(similarity.shape) != (all_ids.shape[0],) * 2:
        raise ValueError(f"similarity: expected ({all_ids.shape[0]}, {all_ids.shape[0]}) for the global batch, "
                         f"got {tuple(similarity.shape)}")
    same = (all_ids.unsqueeze(1) == all_ids.unsqueeze(0)).all(-1) & (all_mask.unsqueeze(1) == all_mask.unsqueeze(0)).all(-1)
    # Every global row's negatives, drawn alike on every process; this process keeps its own rows.
    neg_text = sample_hard_negatives(negative_weights(similarity, same), generator)  # (G,) per image
    neg_image = sample_hard_negatives(negative_weights(similarity.T, same), generator)  # (G,) per text
    rows = torch.arange(offset, offset + ids.shape[0], device=ids.device)  # (B,) global rows
    text_rows = torch.cat([rows, neg_text[rows], rows])  # (3B,)
    image_rows = torch.cat([rows, rows, neg_image[rows]])  # (3B,)
    context = {k: gather_rows(v, group)[image_rows] for k, v in context_of(batch).items()}
    labels = torch.cat([torch.ones_like(rows), torch.zeros_like(rows), torch.zeros_like(rows)])
    return MatchingBatch(all_ids[text_rows], all_mask[text_rows], context, labels)


class MatchingObjective(nn.Module):
    """ITM with hard negatives. Without ``similarity`` given, the similarities come from the model's
    contrastive embeddings (computed without gradient). ``loss`` = ITM cross-entropy + the decoder's
    ``aux_loss``. Metrics: ``itm_loss``, ``itm_accuracy``. ``process_group``: the data-parallel group
    the negatives are drawn across (None = the default group; a parallel run sets its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.process_group: dist.ProcessGroup | None = None

    def forward(self, model: nn.Module, batch: Mapping[str, Any], similarity: Tensor | None = None,
                offset: int | None = None) -> LossOutput:
        """``similarity``: (G, G) of the global batch and ``offset`` this process's first row in it
        (:class:`~hybridformer.losses.contrastive.ContrastiveLossOutput`'s ``global_logits`` and ``offset``)."""
        group = self.process_group
        if similarity is None:
            ids = require(batch, "input_ids", "MatchingObjective")
            with torch.no_grad():
                emb = model.contrastive(ids, batch.get("attention_mask"), require(batch, "images", "MatchingObjective"))
                similarity = gather_with_grad(emb.image_embeddings, group) @ gather_with_grad(emb.text_embeddings, group).T
            offset = group_rank(group) * ids.shape[0]
        pairs = matching_batch(batch, similarity, offset=offset or 0, group=group)
        out = model(pairs.input_ids, pairs.attention_mask, **pairs.context)
        loss = itm_loss(out.itm_logits, pairs.labels)
        with torch.no_grad():
            accuracy = (out.itm_logits.argmax(1) == pairs.labels).float().mean()
        return LossOutput(loss=loss + out.aux_loss, metrics={"itm_loss": loss.detach(), "itm_accuracy": accuracy})
