"""Collators for image-text, VQA and video-text examples: pixels stacked as floats, text tokenized.

Every collator returns a dict of tensors:

* ``images`` float (B, C, H, W) / ``videos`` float (B, C, T, H, W): pixels / 255 in [0, 1], then
  ``(x - mean) / std`` when ``mean``/``std`` are given (ImageNet's for pretrained torchvision weights);
  resized (bilinear, antialiased) to ``image_size`` when set, channels converted to ``channels`` when
  set (grey -> RGB repeats, RGB -> grey is ITU-R 601 luma).
* ``input_ids``, ``attention_mask`` (and ``token_type_ids`` for BERT tokenizers) (B, N): the caption or
  question, padded to the longest in the batch and truncated at ``max_length`` (as
  :class:`hybridformer.data.TextCollator`).
* task targets: ``labels`` (B,) class; VQA ``answer_labels`` (B,) index into the answer vocabulary
  (-100 when the answer is not in it), ``answer_scores`` (B, V) soft VQA scores (each answer's VQA
  accuracy against the 10 references, the usual classifier target), ``answer_ids`` /
  ``answer_attention_mask`` the tokenized answer for a generative head; video ``directions`` (B,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..evaluation.vqa import vqa_question_accuracy
from .image_text import ImageTextExample
from .moving_mnist import VideoExample
from .vqa import VQAExample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["PixelSpec", "stack_pixels", "ImageTextCollator", "VQACollator", "VideoTextCollator"]

_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class PixelSpec:
    """How images/frames become float tensors."""

    image_size: int | None = None
    """Resize every image (or frame) to image_size × image_size; None keeps sizes (they must then match)."""
    channels: int | None = None
    """Convert to 1 or 3 channels; None keeps the examples' (they must then match)."""
    mean: tuple[float, ...] | None = None
    """Per-channel mean subtracted after scaling to [0, 1], or None."""
    std: tuple[float, ...] | None = None
    """Per-channel std divided by after the mean, or None."""

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels: must be 1, 3 or None, got {self.channels!r}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size: must be >= 1, got {self.image_size}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean, std: give both or neither")


def _convert(x: Tensor, spec: PixelSpec) -> Tensor:
    """uint8 (C, ..., H, W) -> float (C', ..., H', W') per ``spec`` (C first; a clip's T in the middle)."""
    x = x.float() / 255.0
    if spec.channels == 3 and x.shape[0] == 1:
        x = x.expand(3, *x.shape[1:])
    elif spec.channels == 1 and x.shape[0] == 3:
        x = torch.einsum("c...,c->...", x, torch.tensor(_LUMA)).unsqueeze(0)
    if spec.image_size is not None and tuple(x.shape[-2:]) != (spec.image_size, spec.image_size):
        flat = x.reshape(-1, 1, *x.shape[-2:])  # (C*T, 1, H, W): interpolate every plane alike
        flat = F.interpolate(flat, size=(spec.image_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        x = flat.reshape(*x.shape[:-2], spec.image_size, spec.image_size)
    if spec.mean is not None:
        view = (-1,) + (1,) * (x.ndim - 1)
        x = (x - torch.tensor(spec.mean).view(view)) / torch.tensor(spec.std).view(view)
    return x


def stack_pixels(pixels: Sequence[Tensor], spec: PixelSpec, what: str = "images") -> Tensor:
    """uint8 images (C, H, W) or clips (C, T, H, W) -> one float batch (B, C, [T,] H, W)."""
    if not pixels:
        raise ValueError("examples: cannot collate an empty batch")
    converted = [_convert(p, spec) for p in pixels]
    shapes = {tuple(c.shape) for c in converted}
    if len(shapes) > 1:
        raise ValueError(
            f"examples: the {what} differ in shape ({sorted(shapes)[:3]}); set image_size/channels to make them uniform"
        )
    return torch.stack(converted)


def _tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> dict[str, Tensor]:
    return dict(tokenizer(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="pt"))


@dataclass
class ImageTextCollator:
    """:class:`ImageTextExample` s -> ``{"images", "input_ids", "attention_mask", "labels"}``."""

    tokenizer: PreTrainedTokenizerBase
    """A Hugging Face tokenizer (e.g. :func:`hybridformer.data.minilm_tokenizer`)."""
    max_length: int = 64
    """Truncate captions to this many tokens, special tokens counted."""
    pixels: PixelSpec = PixelSpec()
    """Resizing, channels and normalisation of the images."""

    def __call__(self, examples: Sequence[ImageTextExample]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("examples: cannot collate an empty batch")
        batch = _tokenize(self.tokenizer, [e.caption for e in examples], self.max_length)
        batch["images"] = stack_pixels([e.image for e in examples], self.pixels)
        batch["labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)
        return batch


@dataclass
class VQACollator:
    """:class:`VQAExample` s -> images, question tokens, answer targets (index, soft scores, tokens)."""

    tokenizer: PreTrainedTokenizerBase
    """Tokenizes the questions and the answers."""
    answer_vocab: Sequence[str]
    """The classifier's answers (:func:`hybridformer.data.answer_vocabulary` of the training split)."""
    max_length: int = 32
    """Truncate questions to this many tokens."""
    max_answer_length: int = 8
    """Truncate tokenized answers to this many tokens."""
    pixels: PixelSpec = PixelSpec()
    """Resizing, channels and normalisation of the images."""

    def __post_init__(self) -> None:
        if not self.answer_vocab:
            raise ValueError("answer_vocab: needs at least one answer")
        self._index = {a: i for i, a in enumerate(self.answer_vocab)}

    def __call__(self, examples: Sequence[VQAExample]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("examples: cannot collate an empty batch")
        batch = _tokenize(self.tokenizer, [e.question for e in examples], self.max_length)
        answers = _tokenize(self.tokenizer, [e.multiple_choice_answer for e in examples], self.max_answer_length)
        batch["answer_ids"], batch["answer_attention_mask"] = answers["input_ids"], answers["attention_mask"]
        batch["images"] = stack_pixels([e.image for e in examples], self.pixels)
        batch["answer_labels"] = torch.tensor([self._index.get(e.multiple_choice_answer, -100) for e in examples])
        scores = torch.zeros(len(examples), len(self.answer_vocab))
        for row, e in enumerate(examples):
            for answer in set(e.answers):
                if answer in self._index:
                    scores[row, self._index[answer]] = vqa_question_accuracy(answer, e.answers, mode="always")
        batch["answer_scores"] = scores
        batch["question_ids"] = torch.tensor([e.question_id for e in examples], dtype=torch.long)
        return batch


@dataclass
class VideoTextCollator:
    """:class:`VideoExample` s -> ``{"videos" (B, C, T, H, W), caption tokens, "labels", "directions"}``."""

    tokenizer: PreTrainedTokenizerBase
    """Tokenizes the captions."""
    max_length: int = 64
    """Truncate captions to this many tokens."""
    pixels: PixelSpec = PixelSpec()
    """Resizing (per frame), channels and normalisation of the clips."""

    def __call__(self, examples: Sequence[VideoExample]) -> dict[str, Tensor]:
        if not examples:
            raise ValueError("examples: cannot collate an empty batch")
        batch = _tokenize(self.tokenizer, [e.caption for e in examples], self.max_length)
        batch["videos"] = stack_pixels([e.clip for e in examples], self.pixels, what="clips")
        batch["labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)
        batch["directions"] = torch.tensor([e.direction for e in examples], dtype=torch.long)
        return batch
