"""VQA-v2 accuracy with the official answer normalisation (the VQA API's ``vqaEval.py``).

Per question, with 10 reference answers: for each of the 10 leave-one-out subsets of 9 references,
``min(#matches in the subset / 3, 1)``; the question's accuracy is the mean of those 10 numbers (so an
answer given by 3 or more of the 10 people scores 1, by 2 scores 0.6, by 1 scores 0.3). The dataset's
accuracy is the mean over questions.

Normalisation, as the official script does it:

* punctuation (``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``) is deleted when it touches a space or the
  answer has a digit-comma-digit ("1,000"), else replaced by a space; a period not followed by a digit
  is deleted (so "3.5" keeps its point);
* lower-case, number words ``none``/``zero``..``ten`` -> digits, articles ``a an the`` dropped,
  apostrophe-less contractions restored ("dont" -> "don't").

One quirk is kept on purpose (``mode="official"``, the default): the official script normalises only
when the 10 references are *not* all identical; when they all agree it compares lower-cased, stripped
strings only, so "two" scores 0 against ten "2". ``mode="always"`` normalises every question (what most
re-implementations do); use it where the references are ten copies of one answer, as in our generated
sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

__all__ = ["extract_answer", "normalize_answer", "vqa_question_accuracy", "vqa_accuracy", "VQAAccuracy"]

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
"""The official table (it maps only the forms listed; "Im" and "Ive" never match after lower-casing)."""
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a (mistyped) lookahead that never
# blocks a period, so in effect every period not followed by a digit is removed. Same behaviour here.
_PERIOD = re.compile(r"\.(?!\d)")


def _punctuation(text: str) -> str:
    out = text
    has_comma_number = _COMMA_NUMBER.search(text) is not None
    for p in _PUNCT:
        # the tests read the *input* text, as the official code does
        if (p + " " in text or " " + p in text) or has_comma_number:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def _digits_articles(text: str) -> str:
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """The official normalisation: whitespace, punctuation, then digits/articles/contractions."""
    return _digits_articles(_punctuation(_clean(answer)))


def vqa_question_accuracy(prediction: str, references: Sequence[str], mode: Literal["official", "always"] = "official") -> float:
    """VQA accuracy of one answer against its references (10 in VQA-v2), in [0, 1]."""
    if not references:
        raise ValueError("references: a question needs at least one reference answer")
    if mode not in ("official", "always"):
        raise ValueError(f"mode: must be 'official' or 'always', got {mode!r}")
    refs = [_clean(r) for r in references]
    pred = _clean(prediction)
    if mode == "always" or len(set(refs)) > 1:
        refs = [normalize_answer(r) for r in refs]
        pred = normalize_answer(pred)
    pred = pred.lower()
    matches = [r.lower() == pred for r in refs]
    total = sum(matches)
    # leave reference j out: the other references that match number total - matches[j]
    return sum(min(1.0, (total - m) / 3) for m in matches) / len(refs)


@dataclass(frozen=True)
class VQAAccuracy:
    """Dataset-level VQA accuracy."""

    overall: float
    """Mean accuracy over all questions, in [0, 1] (the official script prints 100×)."""
    per_answer_type: dict[str, float]
    """Mean accuracy per answer type ("yes/no", "number", "other") when types were given."""
    per_question: dict[int, float]
    """question_id -> accuracy."""


def vqa_accuracy(
    predictions: Mapping[int, str],
    references: Mapping[int, Sequence[str]],
    answer_types: Mapping[int, str] | None = None,
    mode: Literal["official", "always"] = "official",
) -> VQAAccuracy:
    """VQA accuracy of ``predictions`` (question_id -> answer) against ``references`` (question_id -> answers).

    Every question of ``references`` must have a prediction (the official script also requires it).
    """
    missing = [q for q in references if q not in predictions]
    if missing:
        raise ValueError(f"predictions: no answer for {len(missing)} of {len(references)} questions, e.g. {missing[0]}")
    if not references:
        raise ValueError("references: no questions to score")
    per_question = {q: vqa_question_accuracy(predictions[q], refs, mode) for q, refs in references.items()}
    by_type: dict[str, list[float]] = {}
    if answer_types is not None:
        for q, acc in per_question.items():
            by_type.setdefault(answer_types.get(q, "other"), []).append(acc)
    return VQAAccuracy(
        overall=sum(per_question.values()) / len(per_question),
        per_answer_type={t: sum(v) / len(v) for t, v in sorted(by_type.items())},
        per_question=per_question,
    )


_ANSWER_END = re.compile(r"[?!;:\n]|[.,](?!\d)")
"""Where a generated answer ends: sentence punctuation (a period or comma only when no digit follows: "3.5", "1,000")."""


def extract_answer(text: str, max_words: int | None = None) -> str:
    """The answer in a decoded continuation: the text before the first sentence punctuation, VQA-v2
    normalised (:func:`normalize_answer`: lower case, number words to
    digits, articles and punctuation dropped), then at most ``max_words`` words."""
    head = _ANSWER_END.split(text, maxsplit=1)[0]
    words = normalize_answer(head).split()
    return " ".join(words if max_words is None else words[:max_words])
