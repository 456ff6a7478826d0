"""Retrieval recall@k against hand-counted cases, and the chance level of the random-similarity baseline."""

import pytest
import torch

from hybridformer.recipes.mm_metrics import recall_at_k


def test_recall_at_k_by_hand():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.1, 0.2, 0.3]])
    correct = torch.eye(3, dtype=torch.bool)
    assert recall_at_k(sim, correct, 1) == pytest.approx(2 / 3)  # row 1 ranks column 0 first
    assert recall_at_k(sim, correct, 2) == 1.0
    duplicate = correct.clone()
    duplicate[1, 0] = True  # an identical caption counts as a hit
    assert recall_at_k(sim, duplicate, 1) == 1.0


def test_random_similarities_score_k_over_n():
    n, g = 200, torch.Generator().manual_seed(0)
    scores = [recall_at_k(torch.rand(n, n, generator=g), torch.eye(n, dtype=torch.bool), 5) for _ in range(20)]
    assert abs(sum(scores) / len(scores) - 5 / n) < 0.01


def test_spread_covers_a_class_ordered_split():
    from hybridformer.recipes.mm_metrics import spread

    labels = [c for c in range(10) for _ in range(50)]  # ordered by class, like the splits
    chosen = spread(len(labels), 100)
    assert len(chosen) == 100 == len(set(chosen))
    assert sorted({labels[i] for i in chosen}) == list(range(10))
    assert spread(7, None) == list(range(7)) == spread(7, 70)
