"""Masked language modelling (BERT): the masking function and the loss, both outside the model.

:func:`mask_tokens` picks 15% of the real, non-special tokens as prediction targets and corrupts them
80/10/10 ([MASK] / random token / unchanged). The model's MLM head produces vocabulary logits and
:func:`mlm_loss` / :class:`MLMLoss` score them on the targets only (label -100 elsewhere, the
``ignore_index`` convention of ``torch.nn.functional.cross_entropy`` and Hugging Face).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses.output import LossOutput, model_inputs, require_labels

__all__ = ["IGNORE_INDEX", "MaskedTokens", "mask_tokens", "MLMLossOutput", "mlm_loss", "MLMLoss", "MLMObjective"]

IGNORE_INDEX = -100
"""Label of positions that are not prediction targets."""


@dataclass
class MaskedTokens:
    """Output of :func:`mask_tokens`."""

    input_ids: Tensor
    """(B, N) corrupted ids to feed the model (a new tensor; the input is left untouched)."""
    labels: Tensor
    """(B, N) original id at target positions, :data:`IGNORE_INDEX` elsewhere."""


def mask_tokens(
    input_ids: Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_tokens_mask: Tensor | None = None,
    special_token_ids: Sequence[int] | None = None,
    attention_mask: Tensor | None = None,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> MaskedTokens:
    """Choose MLM targets and corrupt them (BERT's recipe).

    Each eligible token becomes a target with probability ``mlm_probability``; a target is replaced
    by ``mask_token_id`` with probability ``mask_replace_prob``, by a uniformly random id in
    ``[0, vocab_size)`` with probability ``random_replace_prob``, and kept otherwise. Special tokens
    and padding are never targets and never changed.

    Args:
        input_ids: (B, N) token ids.
        mask_token_id: id of the [MASK] / <mask> token.
        vocab_size: number of ids random replacements are drawn from.
        special_tokens_mask: (B, N), nonzero at special tokens (e.g. from the tokenizer's
            ``return_special_tokens_mask=True``).
        special_token_ids: alternatively, the ids that are special (``tokenizer.all_special_ids``);
            at least one of the two must be given so [CLS]/[SEP] are never masked.
        attention_mask: (B, N), 0 at padding; None when there is no padding.
        mlm_probability: target rate among eligible tokens.
        mask_replace_prob: share of targets replaced by [MASK].
        random_replace_prob: share of targets replaced by a random id (the rest stay unchanged).
        generator: RNG for the draws; None uses torch's global RNG (saved by the Trainer).

    Returns:
        :class:`MaskedTokens` (``input_ids``, ``labels``), both (B, N) long.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids: expected (B, N), got shape {tuple(input_ids.shape)}")
    if special_tokens_mask is None and special_token_ids is None:
        raise ValueError("special_tokens_mask/special_token_ids: pass one so special tokens are never masked")
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability: must be in [0, 1], got {mlm_probability}")
    if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
        raise ValueError(
            f"mask_replace_prob/random_replace_prob: must be >= 0 with sum <= 1, got {mask_replace_prob}, "
            f"{random_replace_prob}"
        )
    for name, mask in (("special_tokens_mask", special_tokens_mask), ("attention_mask", attention_mask)):
        if mask is not None and mask.shape != input_ids.shape:
            raise ValueError(f"{name}: expected shape {tuple(input_ids.shape)} like input_ids, got {tuple(mask.shape)}")

    eligible = torch.ones_like(input_ids, dtype=torch.bool)
    if special_tokens_mask is not None:
        eligible &= ~special_tokens_mask.bool()
    if special_token_ids is not None:
        eligible &= ~torch.isin(input_ids, torch.as_tensor(list(special_token_ids), device=input_ids.device))
    if attention_mask is not None:
        eligible &= attention_mask.bool()

    device = input_ids.device

    def draw(p: float) -> Tensor:
        return torch.rand(input_ids.shape, generator=generator, device=device) < p

    targets = draw(mlm_probability) & eligible
    labels = torch.where(targets, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    to_mask = draw(mask_replace_prob) & targets
    # Among the targets not masked, the random share is random / (1 - mask) of them.
    rest = 1.0 - mask_replace_prob
    to_random = draw(random_replace_prob / rest if rest > 0 else 0.0) & targets & ~to_mask
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device, dtype=input_ids.dtype)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return MaskedTokens(input_ids=corrupted, labels=labels)


@dataclass
class MLMLossOutput:
    """Output of :class:`MLMLoss`."""

    loss: Tensor
    """Scalar mean cross-entropy over target positions (0, still differentiable, if there are none)."""
    num_targets: Tensor
    """Scalar long: number of target positions."""
    accuracy: Tensor
    """Scalar: share of targets whose argmax prediction is right (0 if there are none)."""


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of ``logits`` against ``labels`` over positions whose label is not -100.

    Args:
        logits: (B, N, V) or (M, V) vocabulary scores (any float dtype; computed in float32).
        labels: (B, N) or (M,) target ids, :data:`IGNORE_INDEX` where not a target.

    Returns:
        Scalar loss. With no target at all it is 0 (with a gradient of 0) rather than NaN, so a
        batch where masking picked nothing does not stop training.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits/labels: logits {tuple(logits.shape)} must be labels {tuple(labels.shape)} plus a vocabulary dim"
        )
    flat_logits = logits.reshape(-1, logits.shape[-1])  # (B*N, V)
    flat_labels = labels.reshape(-1)  # (B*N,)
    total = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    # Sum / count instead of reduction="mean": no NaN when nothing was masked, and no host sync to check.
    return total / (flat_labels != IGNORE_INDEX).sum().clamp(min=1)


class MLMLoss(nn.Module):
    """:func:`mlm_loss` as a module, also reporting the target count and accuracy for logging."""

    def forward(self, logits: Tensor, labels: Tensor) -> MLMLossOutput:
        """Args: logits (B, N, V) or (M, V); labels (B, N) or (M,) with -100 at non-targets."""
        loss = mlm_loss(logits, labels)
        with torch.no_grad():
            targets = labels != IGNORE_INDEX
            num = targets.sum()
            correct = ((logits.argmax(dim=-1) == labels) & targets).sum()
            accuracy = correct.float() / num.clamp(min=1)
        return MLMLossOutput(loss=loss, num_targets=num, accuracy=accuracy)


class MLMObjective(nn.Module):
    """Masked language modelling on a batch from :class:`~hybridformer.data.MLMCollator`.

    The model scores only the target positions (``positions = labels != -100``; scoring every token
    against the vocabulary would cost more than the encoder itself). ``loss`` = the MLM cross-entropy
    + the model's ``aux_loss``. Metrics: ``mlm_loss``, ``aux_loss``, ``mlm_accuracy``, ``mlm_targets``.
    """

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        labels = require_labels(batch, "MLMObjective")
        inputs = model_inputs(batch)
        if labels.shape != inputs["input_ids"].shape:
            raise ValueError(
                f"labels: expected shape {tuple(inputs['input_ids'].shape)} like input_ids, got {tuple(labels.shape)}"
            )
        positions = labels != IGNORE_INDEX  # (B, N)
        out = model(**inputs, positions=positions)
        targets = labels[positions]  # (M,), row-major like the model's (M, V) logits
        scored = MLMLoss()(out.logits, targets)
        return LossOutput(
            loss=scored.loss + out.aux_loss,
            metrics={
                "mlm_loss": scored.loss.detach(),
                "aux_loss": out.aux_loss.detach(),
                "mlm_accuracy": scored.accuracy,
                "mlm_targets": scored.num_targets.float(),
            },
        )
