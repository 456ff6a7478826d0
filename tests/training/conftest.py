"""A tiny real model and dataset for trainer tests (fast on 2 CPU cores)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn


@dataclass
class TinyOutput:
    logits: Tensor
    aux_loss: Tensor


class TinyClassifier(nn.Module):
    """Embedding -> dropout -> masked mean pool -> LayerNorm -> linear; trained with ClassificationObjective."""

    def __init__(self, vocab: int = 40, dim: int = 16, n_labels: int = 3, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_labels)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> TinyOutput:
        h = self.drop(self.embed(input_ids))  # (B, N, d)
        mask = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, N, 1)
        pooled = (h * mask).sum(1) / mask.sum(1)  # (B, d)
        logits = self.head(self.norm(pooled))
        return TinyOutput(logits=logits, aux_loss=logits.new_zeros(()))


def make_examples(n: int = 40, vocab: int = 40, seed: int = 0) -> list[dict]:
    """Variable-length token sequences whose label is a function of their content (learnable)."""
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        length = int(torch.randint(3, 12, (1,), generator=g))
        ids = torch.randint(1, vocab, (length,), generator=g)
        examples.append({"input_ids": ids, "label": int(ids[0]) % 3})
    return examples


def pad_collate(examples: list[dict]) -> dict[str, Tensor]:
    """Pad to the batch's longest sequence with id 0."""
    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros(len(examples), longest, dtype=torch.long)
    mask = torch.zeros(len(examples), longest, dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e["input_ids"])] = e["input_ids"]
        mask[i, : len(e["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([e["label"] for e in examples])}


@pytest.fixture
def tiny_data() -> list[dict]:
    return make_examples()


@pytest.fixture
def tiny_classifier() -> type[TinyClassifier]:
    return TinyClassifier


@pytest.fixture
def collate():
    return pad_collate
