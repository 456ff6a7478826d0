"""Answer candidates by question opening: the VQA answer-type prior from training pairs."""

from __future__ import annotations

import torch

from hybridformer.evaluation.vqa_candidates import OpeningCandidates, opening

PAIRS = [("Is this a 7?", "yes"), ("is this digit even?", "no"), ("is this number greater than 3?", "yes"),
         ("what digit is this?", "7"), ("What digit is this?", "3"), ("what digit is this?", "3")]
ANSWERS = ["yes", "no", "3", "7", "2"]


def test_opening_is_the_lower_cased_first_words():
    assert opening("Is this a 7?", 2) == "is this" and opening("What  digit, is it?", 3) == "what digit is"
    assert opening("Why?", 2) == "why"


def test_mask_keeps_the_answers_of_the_questions_opening_and_everything_for_an_unseen_one():
    allowed = OpeningCandidates.from_pairs(PAIRS, words=2)
    mask = allowed.mask(["is this a 2?", "what digit is shown?", "how many digits?"], ANSWERS)
    expected = torch.tensor([[True, True, False, False, False],   # "is this": yes, no
                             [False, False, True, True, False],   # "what digit": 7, 3 (2 never given)
                             [True, True, True, True, True]])     # unseen opening: every answer
    assert torch.equal(mask, expected)


def test_majority_is_the_first_vocabulary_answer_the_opening_takes():
    """The vocabulary lists answers most frequent first; a ranking whose scores all tie gives this one."""
    allowed = OpeningCandidates.from_pairs(PAIRS, words=2)
    assert allowed.majority("is this a 9?", ANSWERS) == "yes"
    assert allowed.majority("what digit is it?", ANSWERS) == "3"   # 3 before 7 in the vocabulary
    assert allowed.majority("how many?", ANSWERS) == "yes"         # unseen: the first answer
    assert allowed.majority("what digit is it?", ["7", "3"]) == "7"
