"""VQA-v2 accuracy and answer normalisation against hand-computed cases."""

from __future__ import annotations

import pytest

from hybridformer.evaluation import normalize_answer, vqa_accuracy, vqa_question_accuracy


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes.", "yes"),  # period not before a digit is removed, lower-cased
        ("3.5", "3.5"),  # a decimal point stays
        ("Two", "2"),  # number words become digits
        ("none", "0"),
        ("a red car", "red car"),  # articles dropped
        ("The cat!", "cat"),  # "!" at the end touches no space: replaced by a space, then split away
        ("dont know", "don't know"),  # contractions restored
        ("red-ish", "red ish"),  # punctuation not touching a space becomes a space
        ("red - ish", "red ish"),  # touching a space: deleted
        ("1,000", "1000"),  # digit,digit: commas (and all punctuation) deleted
        ("  \tleft\n", "left"),
        ("Im here", "im here"),  # the official table's "Im" never matches after lower-casing
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_leave_one_out_counts():
    # all ten agree -> 1; an answer nobody gave -> 0
    assert vqa_question_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_question_accuracy("no", ["yes"] * 10) == 0.0
    # 2 of 10 said "red": leaving out a "red" (2 ways) leaves 1 match -> 1/3, else 2 matches -> 2/3
    refs = ["red"] * 2 + ["blue"] * 8
    assert vqa_question_accuracy("red", refs) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)  # 0.6
    assert vqa_question_accuracy("red", refs) == pytest.approx(0.6)
    # 1 of 10 -> 0.3 (9 subsets keep it: 1/3 each)
    assert vqa_question_accuracy("green", ["green"] + ["blue"] * 9) == pytest.approx(0.3)
    # 3 of 10: leaving out one of them keeps 2 -> 2/3 (3 ways), else 3 -> 1 (7 ways) = 0.9
    assert vqa_question_accuracy("dog", ["dog"] * 3 + ["cat"] * 7) == pytest.approx((3 * 2 / 3 + 7) / 10)
    # 4 or more -> every subset keeps >= 3 -> 1
    assert vqa_question_accuracy("dog", ["dog"] * 4 + ["cat"] * 6) == 1.0


def test_normalisation_applies_when_references_differ():
    refs = ["two"] * 3 + ["2 dogs"] * 7  # differ -> both sides normalised: "two" -> "2"
    assert vqa_question_accuracy("2", refs) == pytest.approx(0.9)
    assert vqa_question_accuracy("The Cat.", ["cat"] * 4 + ["dog"] * 6) == 1.0


def test_official_quirk_no_normalisation_when_all_references_agree():
    assert vqa_question_accuracy("two", ["2"] * 10) == 0.0  # the official script compares raw strings
    assert vqa_question_accuracy("YES", ["yes"] * 10) == 1.0  # ... lower-cased
    assert vqa_question_accuracy("two", ["2"] * 10, mode="always") == 1.0


def test_dataset_accuracy_and_answer_types():
    refs = {1: ["yes"] * 10, 2: ["red"] * 2 + ["blue"] * 8, 3: ["3"] * 10}
    preds = {1: "yes", 2: "red", 3: "4"}
    result = vqa_accuracy(preds, refs, answer_types={1: "yes/no", 2: "other", 3: "number"})
    assert result.overall == pytest.approx((1 + 0.6 + 0) / 3)
    assert result.per_answer_type == pytest.approx({"number": 0.0, "other": 0.6, "yes/no": 1.0})
    assert result.per_question[2] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="predictions: no answer for 1 of 3 questions"):
        vqa_accuracy({1: "yes", 2: "red"}, refs)
    with pytest.raises(ValueError, match="mode"):
        vqa_question_accuracy("x", ["x"], mode="lenient")
