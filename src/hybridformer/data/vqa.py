"""VQA in the official VQA-v2 JSON layout: a questions file and an annotations file per split.

Layout (as ``v2_OpenEnded_mscoco_val2014_questions.json`` / ``v2_mscoco_val2014_annotations.json``)::

    questions:   {"info", "task_type", "data_type", "data_subtype", "license",
                  "questions": [{"image_id": int, "question": str, "question_id": int}, ...]}
    annotations: {"info", "data_type", "data_subtype", "license",
                  "annotations": [{"question_id", "image_id", "question_type", "answer_type",
                                   "multiple_choice_answer",
                                   "answers": [10 x {"answer", "answer_confidence", "answer_id"}]}, ...]}

:func:`read_vqa` reads any pair of files in this layout — the ones our code generates from real image
labels (:mod:`hybridformer.data.vqa_generate`) or a real VQA-v2 download with its COCO image folder
(:func:`coco_image_lookup`). Only ``questions`` / ``annotations`` and the keys above are required.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import Tensor
from torch.utils.data import Dataset

from ..io import atomic_write
from .images import load_image

__all__ = ["VQAExample", "VQADataset", "write_vqa", "read_vqa", "coco_image_lookup", "answer_vocabulary"]

ImageLookup = Callable[[int], Tensor]
"""image_id -> uint8 image (C, H, W)."""


@dataclass(frozen=True)
class VQAExample:
    """One question about one image, with its ten reference answers."""

    image: Tensor
    """uint8 (C, H, W)."""
    question: str
    """The question text."""
    answers: tuple[str, ...]
    """The annotators' answers (10 in VQA-v2), as written in the file."""
    multiple_choice_answer: str
    """The most common answer (the usual training target)."""
    answer_type: str
    """``"yes/no"``, ``"number"`` or ``"other"``."""
    question_id: int
    """Unique id of the question."""
    image_id: int
    """Id of the image the question is about."""


class VQADataset(Dataset[VQAExample]):
    """The questions of one split, joined with their annotations and images."""

    def __init__(self, questions: list[dict[str, Any]], annotations: dict[int, dict[str, Any]], images: ImageLookup,
                 name: str = "vqa") -> None:  # fmt: skip
        self.questions, self.annotations, self.images, self.name = questions, annotations, images, name

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> VQAExample:
        q = self.questions[index]
        a = self.annotations[q["question_id"]]
        return VQAExample(
            image=self.images(q["image_id"]), question=q["question"],
            answers=tuple(x["answer"] for x in a["answers"]), multiple_choice_answer=a["multiple_choice_answer"],
            answer_type=a.get("answer_type", "other"), question_id=q["question_id"], image_id=q["image_id"],
        )

    def reference_answers(self) -> dict[int, list[str]]:
        """question_id -> its reference answers (what :func:`hybridformer.evaluation.vqa_accuracy` takes)."""
        return {qid: [x["answer"] for x in a["answers"]] for qid, a in self.annotations.items()}


def write_vqa(
    out_dir: str | Path,
    name: str,
    questions: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    *,
    info: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``{name}_questions.json`` and ``{name}_annotations.json`` in the VQA-v2 layout; return both paths."""
    folder = Path(out_dir)
    header = {"info": info or {}, "data_type": "hybridformer", "data_subtype": name, "license": {}}
    q_path, a_path = folder / f"{name}_questions.json", folder / f"{name}_annotations.json"
    for path, body in ((q_path, {**header, "task_type": "Open-Ended", "questions": questions}),
                       (a_path, {**header, "annotations": annotations})):  # fmt: skip
        text = json.dumps(body)  # compact: the files are large (10 answers per question)
        atomic_write(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return q_path, a_path


def _load_json(path: Path, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not path.is_file():
        raise ValueError(f"{path}: VQA file not found")
    try:
        body = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise ValueError(f"{path}: expected a JSON object with a {key!r} list (the VQA-v2 layout)")
    return body, body[key]


def read_vqa(questions_file: str | Path, annotations_file: str | Path, images: ImageLookup, name: str = "vqa") -> VQADataset:
    """Read a VQA-v2 questions + annotations pair.

    Args:
        questions_file: the ``{"questions": [...]}`` file.
        annotations_file: the ``{"annotations": [...]}`` file.
        images: image_id -> uint8 (C, H, W) image (e.g. :func:`coco_image_lookup` for real VQA-v2).

    Raises:
        ValueError naming the file: missing, not JSON, wrong layout, a question without annotation.
    """
    q_path, a_path = Path(questions_file), Path(annotations_file)
    _, questions = _load_json(q_path, "questions")
    _, annotations = _load_json(a_path, "annotations")
    for i, q in enumerate(questions):
        missing = {"image_id", "question", "question_id"} - set(q)
        if missing:
            raise ValueError(f"{q_path}: question {i} lacks {sorted(missing)}")
    by_id: dict[int, dict[str, Any]] = {}
    for i, a in enumerate(annotations):
        missing = {"question_id", "answers", "multiple_choice_answer"} - set(a)
        if missing or not a.get("answers"):
            raise ValueError(f"{a_path}: annotation {i} lacks {sorted(missing) or ['answers (empty)']}")
        by_id[a["question_id"]] = a
    orphans = [q["question_id"] for q in questions if q["question_id"] not in by_id]
    if orphans:
        raise ValueError(f"{a_path}: no annotation for {len(orphans)} question(s) of {q_path}, e.g. {orphans[0]}")
    return VQADataset(questions, by_id, images, name=name)


def coco_image_lookup(image_dir: str | Path, data_subtype: str, *, channels: int = 3, size: int | None = None) -> ImageLookup:
    """image_id -> image for a real VQA-v2/COCO folder (``COCO_{data_subtype}_{image_id:012d}.jpg``)."""
    folder = Path(image_dir)

    def lookup(image_id: int) -> Tensor:
        return load_image(folder / f"COCO_{data_subtype}_{image_id:012d}.jpg", channels=channels, size=size)

    return lookup


def answer_vocabulary(dataset: VQADataset, min_count: int = 1) -> list[str]:
    """The ``multiple_choice_answer`` s of ``dataset`` seen at least ``min_count`` times, most frequent first."""
    counts = Counter(a["multiple_choice_answer"] for a in dataset.annotations.values())
    return [a for a, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
