"""Collators: a list of examples -> a padded batch dict that the model takes as ``model(**batch)``.

Padding is dynamic (to the longest sequence of the batch, not a fixed length), truncation is at
``max_length`` tokens (for pairs, the longer text loses tokens first). Use them with
:class:`hybridformer.data.LengthBucketBatchSampler` so that a batch holds similar lengths and little
padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from ..losses.mlm import mask_tokens
from .dataset import TextDataset, TextExample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["TextCollator", "MLMCollator", "token_lengths"]


def _split(examples: Sequence[TextExample | str]) -> tuple[list[str], list[str] | None]:
    if not examples:
        raise ValueError("examples: cannot collate an empty batch")
    texts = [e if isinstance(e, str) else e.text for e in examples]
    pairs = [None if isinstance(e, str) else e.text_pair for e in examples]
    has_pair = [p is not None for p in pairs]
    if any(has_pair) and not all(has_pair):
        raise ValueError(f"examples: {sum(has_pair)} of {len(pairs)} examples have a text_pair; all or none must")
    return texts, (pairs if all(has_pair) else None)  # type: ignore[return-value]


def _encode(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    pad_to_multiple_of: int | None,
    special_tokens_mask: bool = False,
) -> dict[str, Tensor]:
    encoding = tokenizer(
        texts,
        pairs,
        truncation=True,
        max_length=max_length,
        padding="longest",
        pad_to_multiple_of=pad_to_multiple_of,
        return_special_tokens_mask=special_tokens_mask,
        return_tensors="pt",
    )
    return dict(encoding)


@dataclass
class TextCollator:
    """Tokenize and pad :class:`TextExample` s for classification.

    Returns ``{"input_ids", "attention_mask", "labels"}`` (plus ``"token_type_ids"`` when the
    tokenizer produces them, as BERT's does), each (B, N) except ``labels`` (B,), all long tensors
    but a regression set's ``labels``: its float targets.
    """

    tokenizer: PreTrainedTokenizerBase
    """A Hugging Face tokenizer (see :func:`hybridformer.data.load_tokenizer`)."""
    max_length: int = 512
    """Truncate each sequence (pair included) to this many tokens, special tokens counted."""
    pad_to_multiple_of: int | None = None
    """Round the padded length up to a multiple of this (e.g. the attention block size), or None."""
    include_labels: bool = True
    """Put the ``labels`` tensor in the batch (False for unlabeled prediction)."""

    def __post_init__(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length: must be >= 2, got {self.max_length}")

    def __call__(self, examples: Sequence[TextExample]) -> dict[str, Tensor]:
        texts, pairs = _split(examples)
        batch = _encode(self.tokenizer, texts, pairs, self.max_length, self.pad_to_multiple_of)
        if self.include_labels:
            if examples[0].target is not None:  # regression: float targets (B,)
                batch["labels"] = torch.tensor([e.target for e in examples], dtype=torch.float32)
            else:
                batch["labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)
        return batch


@dataclass
class MLMCollator:
    """Tokenize, pad and mask texts for masked language modelling (BERT's 15%, 80/10/10).

    Accepts :class:`TextExample` s or plain strings (their labels are ignored). Returns
    ``{"input_ids" (masked), "attention_mask", "labels"}`` (and ``"token_type_ids"`` when the tokenizer
    makes them), each (B, N); ``labels`` holds the original ids at targets and -100 elsewhere.
    Masking draws from torch's global RNG unless ``generator`` is set; the Trainer saves and restores
    that RNG, so resumed pretraining masks exactly as an uninterrupted run would.
    """

    tokenizer: PreTrainedTokenizerBase
    """A Hugging Face tokenizer with a mask token."""
    max_length: int = 512
    """Truncate each sequence to this many tokens, special tokens counted."""
    mlm_probability: float = 0.15
    """Share of real, non-special tokens chosen as prediction targets."""
    pad_to_multiple_of: int | None = None
    """Round the padded length up to a multiple of this, or None."""
    generator: torch.Generator | None = None
    """RNG for the masking draws; None = torch's global RNG."""

    def __post_init__(self) -> None:
        if self.tokenizer.mask_token_id is None:
            raise ValueError("tokenizer: has no mask token, so it cannot be used for MLM")
        if self.max_length < 2:
            raise ValueError(f"max_length: must be >= 2, got {self.max_length}")

    def __call__(self, examples: Sequence[TextExample | str]) -> dict[str, Tensor]:
        texts, pairs = _split(examples)
        batch = _encode(
            self.tokenizer, texts, pairs, self.max_length, self.pad_to_multiple_of, special_tokens_mask=True
        )
        special = batch.pop("special_tokens_mask")
        masked = mask_tokens(
            batch["input_ids"],
            mask_token_id=self.tokenizer.mask_token_id,
            vocab_size=len(self.tokenizer),
            special_tokens_mask=special,
            attention_mask=batch["attention_mask"],
            mlm_probability=self.mlm_probability,
            generator=self.generator,
        )
        batch["input_ids"] = masked.input_ids
        batch["labels"] = masked.labels
        return batch


def token_lengths(
    dataset: TextDataset | Sequence[str], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[int]:
    """Tokenized length of every example (special tokens included, capped at ``max_length``).

    Feed the result to :class:`hybridformer.data.LengthBucketBatchSampler`.
    """
    if isinstance(dataset, TextDataset):
        texts, pairs = dataset.texts, dataset.text_pairs
    else:
        texts, pairs = list(dataset), None
    encoding = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
    return [len(ids) for ids in encoding["input_ids"]]
