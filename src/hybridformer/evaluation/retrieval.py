"""Retrieval metrics: recall@k of a similarity matrix, and what a random ranking would score."""

from __future__ import annotations

from math import comb

from torch import Tensor

__all__ = ["chance_recall_at_k", "recall_at_k"]


def recall_at_k(similarity: Tensor, correct: Tensor, k: int) -> float:
    """Share of rows of ``similarity`` (Q, C) whose top-k columns include a ``correct`` (Q, C) one."""
    top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices  # (Q, k)
    return correct.gather(1, top).any(1).float().mean().item()


def chance_recall_at_k(correct: Tensor, k: int) -> float:
    """The expected :func:`recall_at_k` of a uniformly random ranking: a row with ``c`` correct of ``C``
    columns misses with probability ``C(C - c, k) / C(C, k)``."""
    n = correct.shape[1]
    k = min(k, n)
    return sum(1 - comb(n - c, k) / comb(n, k) for c in correct.sum(1).tolist()) / correct.shape[0]
