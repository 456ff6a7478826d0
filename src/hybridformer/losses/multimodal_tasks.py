"""Fine-tuning objectives of the multimodal model: VQA (answer classifier), image and video classification.

- :class:`VQAObjective`: the answer head on the fused state of ``[CLS] question [SEP]`` reading the
  image, trained with binary cross-entropy against the soft VQA scores (each answer's VQA accuracy;
  ViLT / BUTD's target), scaled by the number of answers as in those recipes.
- :class:`VQAAnswerLMObjective`: the decoder itself answers (BLIP's answer decoder): it reads
  ``[CLS] question answer [SEP]`` with the image as context and is trained on the answer's tokens and
  the closing [SEP] only, so that ranking (``models/answer_ranking.py``) or generation can read the
  answer off its next-token distribution after ``[CLS] question``.
- :class:`ImageClassificationObjective`: cross-entropy of ``model.classify_image(images)``.
- :class:`VideoClassificationObjective`: the answer head, read as a classifier over ``num_answers``
  classes, on the fused state of a fixed prompt reading the clip (the model has no video head).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses._multimodal_batch import context_of, require
from hybridformer.losses.classification import classification_loss
from hybridformer.losses.output import LossOutput

__all__ = ["vqa_loss", "VQAObjective", "answer_sequences", "VQAAnswerLMObjective", "ImageClassificationObjective", "VideoClassificationObjective"]


def vqa_loss(answer_logits: Tensor, answer_scores: Tensor) -> Tensor:
    """BCE-with-logits against soft scores (B, A), summed over answers, mean over questions."""
    if answer_logits.shape != answer_scores.shape:
        raise ValueError(f"answer_scores: expected shape {tuple(answer_logits.shape)}, got {tuple(answer_scores.shape)}")
    return F.binary_cross_entropy_with_logits(answer_logits.float(), answer_scores.float()) * answer_logits.shape[1]


def _accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    with torch.no_grad():
        return (logits.argmax(-1) == labels).float().mean()


class VQAObjective(nn.Module):
    """VQA on a :class:`~hybridformer.data.VQACollator` batch. Metrics: ``vqa_loss``, ``vqa_score``
    (the soft score of the argmax answer)."""

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        scores = require(batch, "answer_scores", "VQAObjective")
        out = model(require(batch, "input_ids", "VQAObjective"), batch.get("attention_mask"), **context_of(batch))
        if out.answer_logits is None:
            raise ValueError("VQAObjective: the model has no answer head (heads.num_answers=0)")
        loss = vqa_loss(out.answer_logits, scores)
        with torch.no_grad():
            score = scores.gather(1, out.answer_logits.argmax(1, keepdim=True)).mean()
        return LossOutput(loss=loss + out.aux_loss, metrics={"vqa_loss": loss.detach(), "vqa_score": score})


def answer_sequences(input_ids: Tensor, attention_mask: Tensor, answer_ids: Tensor,
                     answer_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[CLS] question answer [SEP]`` per row, from ``[CLS] question [SEP]`` and ``[CLS] answer [SEP]``.

    Args:
        input_ids, attention_mask: (B, N) the questions, right-padded, each ending with [SEP].
        answer_ids, answer_mask: (B, M) the answers, right-padded, each starting with [CLS].

    Returns:
        (ids (B, L), mask (B, L) bool, targets (B, L)): right-padded sequences and next-token targets
        that are -100 except where the next token is an answer token or the closing [SEP].
    """
    q_len = attention_mask.sum(1).tolist()
    a_len = answer_mask.sum(1).tolist()
    rows = [torch.cat([input_ids[i, :q - 1], answer_ids[i, 1:a]]) for i, (q, a) in enumerate(zip(q_len, a_len))]
    longest = max(r.numel() for r in rows)
    ids = input_ids.new_zeros(len(rows), longest)  # (B, L)
    mask = torch.zeros(len(rows), longest, dtype=torch.bool, device=input_ids.device)
    targets = torch.full_like(ids, -100)
    for i, (row, q) in enumerate(zip(rows, q_len)):
        ids[i, :row.numel()], mask[i, :row.numel()] = row, True
        # position t predicts token t+1: the answer starts at q-1 (the question's [SEP] was dropped)
        targets[i, q - 2:row.numel() - 1] = row[q - 1:]
    return ids, mask, targets


class VQAAnswerLMObjective(nn.Module):
    """The decoder's next-token loss on the answer (and its closing [SEP]) after ``[CLS] question``,
    reading the image (see the module docstring). Metrics: ``answer_loss``, ``answer_token_accuracy``."""

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        name = "VQAAnswerLMObjective"
        ids, mask, targets = answer_sequences(
            require(batch, "input_ids", name), require(batch, "attention_mask", name),
            require(batch, "answer_ids", name), require(batch, "answer_attention_mask", name),
        )
        out = model(ids, mask, **context_of(batch))
        loss = F.cross_entropy(out.logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        with torch.no_grad():
            real = targets != -100
            accuracy = ((out.logits.argmax(-1) == targets) & real).sum() / real.sum().clamp(min=1)
        return LossOutput(loss=loss + out.aux_loss, metrics={"answer_loss": loss.detach(),
                                                             "answer_token_accuracy": accuracy})


class ImageClassificationObjective(nn.Module):
    """Cross-entropy of the image head on ``images`` against ``labels``."""

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        labels = require(batch, "labels", "ImageClassificationObjective")
        logits = model.classify_image(require(batch, "images", "ImageClassificationObjective")).logits
        loss = classification_loss(logits, labels)
        return LossOutput(loss=loss, metrics={"cls_loss": loss.detach(), "accuracy": _accuracy(logits, labels)})


class VideoClassificationObjective(nn.Module):
    """Cross-entropy of the answer head on the fused state of ``prompt_ids`` reading ``videos``.

    Args:
        label_key: the batch key of the class (``labels`` = digit, ``directions`` = motion).
        prompt_ids: the decoder tokens read for every clip (e.g. ``[CLS] which way does it move? [SEP]``).
    """

    def __init__(self, prompt_ids: list[int], label_key: str = "directions") -> None:
        super().__init__()
        if not prompt_ids:
            raise ValueError("prompt_ids: give at least one token")
        self.prompt_ids, self.label_key = list(prompt_ids), label_key

    def logits(self, model: nn.Module, videos: Tensor) -> Tensor:
        """(B, num_answers) class scores of the clips."""
        ids = torch.tensor([self.prompt_ids], device=videos.device).expand(videos.shape[0], -1)  # (B, N)
        out = model(ids, None, videos=videos)
        if out.answer_logits is None:
            raise ValueError("VideoClassificationObjective: the model has no answer head (heads.num_answers=0)")
        return out.answer_logits

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        labels = require(batch, self.label_key, "VideoClassificationObjective")
        logits = self.logits(model, require(batch, "videos", "VideoClassificationObjective"))
        loss = classification_loss(logits, labels)
        return LossOutput(loss=loss, metrics={"cls_loss": loss.detach(), "accuracy": _accuracy(logits, labels)})
