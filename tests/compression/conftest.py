"""Shared fixtures of the int8 tests: the bundled MiniLM as a 2-class classifier and a real batch."""

from __future__ import annotations

import pytest
import torch

from hybridformer.data import load_tokenizer, minilm_path
from hybridformer.encoders import TextEncoder
from hybridformer.models import TextClassifier

MINILM_TEXTS = [
    "a gripping, beautifully shot film with a weak ending",
    "the worst movie I have seen this year",
    "an honest, funny and warm story about two brothers who run a bakery in a small town",
    "boring",
]
MINILM_LABELS = ["rotten", "fresh"]


@pytest.fixture(scope="module")
def minilm_batch() -> dict[str, torch.Tensor]:
    """The four reviews above, tokenized and padded (bool attention mask)."""
    tokens = load_tokenizer(minilm_path())(MINILM_TEXTS, padding=True, return_tensors="pt")
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"].bool()}


@pytest.fixture(scope="module")
def minilm_classifier() -> TextClassifier:
    """MiniLM's pretrained encoder with a seeded 2-class head, eval mode."""
    torch.manual_seed(0)
    return TextClassifier(TextEncoder.from_pretrained(minilm_path()), 2, label_names=MINILM_LABELS).eval()
