"""Answer candidates conditioned on how a question opens: a VQA answer-type prior from the training split.

VQA-v2 groups questions by their opening words (its ``question_type``: "is this", "what color is",
"how many"), and the answers a type takes barely overlap: "is this ...?" is answered yes or no, "what
digit ...?" with a digit. A ranked answer may only be an answer that training gave to a question
opening with the same first ``words`` words; a question whose opening training never saw keeps every
candidate. A decoder that was never trained on one kind of answer (a caption-pretrained decoder has
not seen "yes" or "no") otherwise answers a yes/no question with whatever its captions made likely.
The prior is learnt from the training annotations only, and the baseline it is compared with (the
first answer of the vocabulary that the question's opening takes) uses it too.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["opening", "OpeningCandidates"]

_WORD = re.compile(r"[a-z0-9']+")


def opening(question: str, words: int) -> str:
    """The question's first ``words`` words, lower-cased, punctuation dropped ("Is this a 7?" -> "is this")."""
    return " ".join(_WORD.findall(question.lower())[:words])


@dataclass
class OpeningCandidates:
    """Which answers each question opening takes, from (question, answer) training pairs."""

    words: int = 2
    """Opening words that define a question's type."""
    answers: dict[str, set[str]] = field(default_factory=dict)
    """opening -> the answers training gave to questions opening that way."""

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], words: int = 2) -> OpeningCandidates:
        """From (question, training answer) pairs (the answer each training question is trained on)."""
        answers: dict[str, set[str]] = defaultdict(set)
        for question, answer in pairs:
            answers[opening(question, words)].add(answer)
        return cls(words, dict(answers))

    def mask(self, questions: Sequence[str], answers: Sequence[str]) -> Tensor:
        """(B, C) bool: answer c is a candidate for question b (every answer when b's opening is unseen)."""
        rows = []
        for question in questions:
            seen = self.answers.get(opening(question, self.words))
            rows.append([seen is None or answer in seen for answer in answers])
        return torch.tensor(rows, dtype=torch.bool).view(len(questions), len(answers))

    def majority(self, question: str, answers: Sequence[str]) -> str:
        """The first of ``answers`` (the vocabulary, most frequent first) that the question's opening
        takes; ``answers[0]`` for an unseen opening. It is the answer a ranking whose scores all tie
        gives, so a model that ignores the image scores exactly this baseline."""
        seen = self.answers.get(opening(question, self.words))
        return next((a for a in answers if a in seen), answers[0]) if seen else answers[0]
