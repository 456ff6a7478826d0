"""Retrieval recall@k against hand-counted cases, and the chance level of the random-similarity baseline."""

import pytest
import torch

from hybridformer.evaluation.retrieval import recall_at_k


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
    from hybridformer.recipes.multimodal_metrics import spread

    labels = [c for c in range(10) for _ in range(50)]  # ordered by class, like the splits
    chosen = spread(len(labels), 100)
    assert len(chosen) == 100 == len(set(chosen))
    assert sorted({labels[i] for i in chosen}) == list(range(10))
    assert spread(7, None) == list(range(7)) == spread(7, 70)


@pytest.mark.parametrize("n, limit, period", [(2000, 200, 4), (2500, 500, 5), (1000, 125, 2), (997, 100, 4)])
def test_spread_does_not_alias_with_a_period_of_the_set(n, limit, period):
    """VQA sets hold 4 questions per image in a fixed order, COCO 5 captions: a plain stride of 10 (or 5)
    would pick one or two phases only; the staggered picks hit every phase about equally."""
    from hybridformer.recipes.multimodal_metrics import spread

    chosen = spread(n, limit)
    assert len(chosen) == len(set(chosen)) == limit and chosen == sorted(chosen) and 0 <= chosen[0] and chosen[-1] < n
    counts = [sum(1 for i in chosen if i % period == phase) for phase in range(period)]
    assert min(counts) >= 0.6 * limit / period, counts


@pytest.mark.parametrize("text, answer", [
    ("seven, written by hand", "7"),  # stops at the comma, number word -> digit
    ("yes.", "yes"),
    ("No! it is not", "no"),
    ("the number two", "number 2"),  # article dropped, the rest kept
    ("3.5 apples. more", "3.5 apples"),  # a decimal point is not the end
    ("1,000 people", "1000 people"),  # nor a thousands comma (VQA's normalisation removes it)
    ("", ""),
])
def test_extract_answer_stops_at_punctuation_and_normalises(text, answer):
    from hybridformer.evaluation.vqa import extract_answer

    assert extract_answer(text) == answer


def test_generated_answers_cut_at_eos_with_the_real_tokenizer():
    from hybridformer.data import minilm_tokenizer
    from hybridformer.evaluation.vqa import extract_answer
    from hybridformer.recipes.multimodal_metrics import generated_answers

    tok = minilm_tokenizer()
    sep, pad = tok.sep_token_id, tok.pad_token_id
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    rows = [ids("seven") + [sep] + ids("eight nine"), ids("a handwritten digit five") + [sep], ids("yes it is")]
    width = max(map(len, rows))
    sequences = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    assert generated_answers(sequences, sep, tok) == ["7", "handwritten digit 5", "yes it is"]
    assert generated_answers(sequences, sep, tok, max_words=1) == ["7", "handwritten", "yes"]
    assert extract_answer("two dogs", max_words=1) == "2"


def test_chance_recall_is_the_mean_recall_of_random_rankings():
    from hybridformer.evaluation.retrieval import chance_recall_at_k

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (40,), generator=g)  # repeated captions: several correct columns per row
    correct = ids.unsqueeze(1) == ids.unsqueeze(0)
    for k in (1, 5):
        empirical = sum(recall_at_k(torch.rand(40, 40, generator=g), correct, k) for _ in range(400)) / 400
        assert abs(chance_recall_at_k(correct, k) - empirical) < 0.015
    assert chance_recall_at_k(torch.eye(10, dtype=torch.bool), 5) == pytest.approx(0.5)
