"""The user's VQA data: a VQA-v2 download (questions + annotations JSON and COCO images) or a JSON-lines file.

VQA-v2, as its download unpacks (any one split)::

    v2_OpenEnded_mscoco_val2014_questions.json     {"data_subtype": "val2014", "questions": [...]}
    v2_mscoco_val2014_annotations.json              {"annotations": [{..., "answers": [10 x {"answer"}]}]}
    val2014/COCO_val2014_000000000042.jpg           (COCO file names: the subtype and a 12-digit image id)

:func:`read_vqa_v2` takes the folder (or the questions file) and finds the annotations beside it and the
images in ``<folder>/<data_subtype>/``, ``<folder>/images/`` or the folder itself (or ``image_dir``).

JSON lines, one question per line (a simple layout for one's own photos)::

    {"image": "photos/kitchen.jpg", "question": "what is on the table?", "answers": ["cup", "mug", "cup"]}

``image`` is relative to the file's folder (or ``image_dir``); ``answers`` is a list (or one string);
``question_id`` and ``answer_type`` are optional. The training target (``multiple_choice_answer``) is
the most frequent answer, the first given among equals.

Both return a :class:`~hybridformer.data.vqa.VQADataset`, scored by
:func:`hybridformer.evaluation.vqa_accuracy`. Errors name the file (and line) and what is wrong.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from torch import Tensor

from .files import jsonl_rows
from .images import load_image
from .vqa import VQADataset, read_vqa

__all__ = ["read_vqa_v2", "read_vqa_jsonl"]


def _one(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        names = [p.name for p in found] or "none"
        raise ValueError(f"{folder}: expected one VQA-v2 {what} file ({pattern}), found {names}; pass the file itself")
    return found[0]


def _subtype(questions_file: Path) -> str:
    try:
        subtype = json.loads(questions_file.read_text(encoding="utf-8")).get("data_subtype")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{questions_file}: not a VQA-v2 questions file ({err})") from None
    if not subtype:
        raise ValueError(f"{questions_file}: no data_subtype (e.g. val2014), which the COCO image names need")
    return str(subtype)


def read_vqa_v2(path: str | Path, image_dir: str | Path | None = None, *, size: int | None = None,
                channels: int = 3) -> VQADataset:
    """Read a VQA-v2 split: ``path`` is its folder or its ``*questions*.json``.

    Args:
        path: the folder holding one ``*questions*.json`` and one ``*annotations*.json`` (or the questions
            file, its annotations file beside it, named with the same subtype).
        image_dir: the COCO image folder; None: ``<folder>/<data_subtype>``, ``<folder>/images`` or the folder.
        size: resize images to ``size``×``size`` when read (None: keep).
        channels: 3 (RGB) or 1 (grey).

    Raises:
        ValueError naming the file: no or several questions/annotations files, bad JSON, a question
            without annotation, or a question whose image file is missing (the first one named).
    """
    path = Path(path)
    if path.is_file():
        questions, folder = path, path.parent
        subtype = _subtype(questions)
        annotations = _one(folder, f"*{subtype}*annotations*.json", "annotations")
    elif path.is_dir():
        folder = path
        questions = _one(folder, "*questions*.json", "questions")
        annotations = _one(folder, "*annotations*.json", "annotations")
        subtype = _subtype(questions)
    else:
        raise ValueError(f"{path}: no such VQA-v2 folder or questions file")
    if image_dir is None:
        candidates = [folder / subtype, folder / "images", folder]
        images = next((d for d in candidates if d.is_dir() and any(d.glob(f"COCO_{subtype}_*"))), candidates[0])
    else:
        images = Path(image_dir)

    def lookup(image_id: int) -> Tensor:
        return load_image(images / f"COCO_{subtype}_{image_id:012d}.jpg", channels=channels, size=size)

    dataset = read_vqa(questions, annotations, lookup, name=f"vqa-v2 {subtype}")
    for q in dataset.questions:
        file = images / f"COCO_{subtype}_{q['image_id']:012d}.jpg"
        if not file.is_file():
            raise ValueError(f"{file}: image of question {q['question_id']} ({questions.name}) not found; "
                             f"pass the COCO image folder as image_dir")
    return dataset


def _answers(path: Path, line_no: int, row: dict[str, Any]) -> list[str]:
    answers = row.get("answers")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError(f"{path} line {line_no}: 'answers' must be a non-empty list of answers (strings)")
    return answers


def read_vqa_jsonl(path: str | Path, image_dir: str | Path | None = None, *, size: int | None = None,
                   channels: int = 3) -> VQADataset:
    """Read a JSON-lines VQA file (see the module docstring); images relative to ``image_dir`` or the file's folder.

    Raises:
        ValueError naming the file and line: invalid JSON, a missing or empty ``image`` / ``question`` /
            ``answers``, a repeated ``question_id``, or an image file that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such VQA JSON-lines file")
    root = Path(image_dir) if image_dir is not None else path.parent
    image_ids: dict[str, int] = {}
    questions, annotations = [], {}
    for line_no, row, _ in jsonl_rows(path):
        for key in ("image", "question"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ValueError(f"{path} line {line_no}: needs a non-empty {key!r} (keys: image, question, answers)")
        answers = _answers(path, line_no, row)
        if not (root / row["image"]).is_file():
            raise ValueError(f"{path} line {line_no}: image file {root / row['image']} not found")
        image_id = image_ids.setdefault(row["image"], len(image_ids))
        qid = row.get("question_id", len(questions))
        if qid in annotations:
            raise ValueError(f"{path} line {line_no}: question_id {qid!r} repeats an earlier question")
        counts = Counter(answers)
        best = max(answers, key=lambda a: counts[a])  # max keeps the first of equals
        questions.append({"image_id": image_id, "question": row["question"], "question_id": qid})
        annotations[qid] = {"question_id": qid, "image_id": image_id, "multiple_choice_answer": best,
                            "answer_type": row.get("answer_type", "other"),
                            "answers": [{"answer": a, "answer_id": j + 1} for j, a in enumerate(answers)]}
    if not questions:
        raise ValueError(f"{path}: the file holds no questions")
    files = {i: root / name for name, i in image_ids.items()}

    def lookup(image_id: int) -> Tensor:
        return load_image(files[image_id], channels=channels, size=size)

    return VQADataset(questions, annotations, lookup, name=path.stem)
