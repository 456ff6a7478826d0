"""GLUE in its official folder layout (what GLUE's download script unpacks), and its submission files.

One folder per task, named as the download names it (``CoLA``, ``SST-2``, ``MRPC``, ``STS-B``, ``QQP``,
``MNLI``, ``QNLI``, ``RTE``, ``WNLI``), holding tab-separated files with no quoting:

=====  =====================================================  ==========================  ===============
task   train.tsv / dev.tsv columns read                       test.tsv columns read       labels
=====  =====================================================  ==========================  ===============
CoLA   no header: source, **label**, author's mark, **text**  ``index  sentence``         0, 1
SST-2  ``sentence  label``                                    ``index  sentence``         0, 1
MRPC   ``Quality  #1 ID  #2 ID  #1 String  #2 String``        ``index  #1 ID  ...``       0, 1
STS-B  ``index genre ... sentence1  sentence2  score``        the same without score      a float 0..5
QQP    ``id  qid1  qid2  question1  question2  is_duplicate`` ``id  question1  question2``  0, 1
MNLI   ``index ... sentence1  sentence2  label1 ... gold_label``  ``index ... sentence1  sentence2``  3 classes
QNLI   ``index  question  sentence  label``                   ``index  question  sentence``  entailment, not_entailment
RTE    ``index  sentence1  sentence2  label``                 ``index  sentence1  sentence2``  entailment, not_entailment
WNLI   ``index  sentence1  sentence2  label``                 ``index  sentence1  sentence2``  0, 1
=====  =====================================================  ==========================  ===============

MNLI's dev and test parts are ``dev_matched`` / ``dev_mismatched`` and ``test_matched`` /
``test_mismatched``. Columns are found by header name (MNLI's dev files hold five annotator labels,
its train file one). The submission file of each test part is ``<name>.tsv`` (``MNLI-m``,
``MNLI-mm`` for MNLI) with the header ``index	prediction`` and one row per test example: the label as
the data writes it (``0``/``1``, ``entailment``, ...) or STS-B's score.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .dataset import TextDataset
from .files import DataFileError

__all__ = ["GlueTask", "GLUE_TASKS", "GluePart", "glue_task_of", "read_glue_part", "glue_dataset",
           "write_glue_submission"]


@dataclass(frozen=True)
class GlueTask:
    """Where one GLUE task keeps its inputs and labels."""

    name: str
    """The folder name and submission name (``RTE``)."""
    text: str
    """Header of the (first) text column."""
    pair: str | None
    """Header of the second text column of a pair task, else None."""
    label: str
    """Header of the label (score) column of train/dev."""
    labels: tuple[str, ...] | None
    """The classes in label order (the official label lists); None: regression (STS-B)."""
    metric: str
    """The official metric: ``accuracy``, ``f1`` (F1 and accuracy), ``matthews`` or ``pearson``
    (Pearson and Spearman correlation)."""
    dev: tuple[str, ...] = ("dev",)
    """The dev parts (file stems); the first is the validation split."""
    test: tuple[tuple[str, str], ...] = (("test", ""),)
    """(file stem, submission suffix) of each test part."""
    header: bool = True
    """False for CoLA's train/dev files, which have none (label in column 1, sentence in column 3)."""

    @property
    def is_regression(self) -> bool:
        return self.labels is None


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
GLUE_TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("CoLA", "sentence", None, "label", _BINARY, "matthews", header=False),
    GlueTask("SST-2", "sentence", None, "label", _BINARY, "accuracy"),
    GlueTask("MRPC", "#1 String", "#2 String", "Quality", _BINARY, "f1"),
    GlueTask("STS-B", "sentence1", "sentence2", "score", None, "pearson"),
    GlueTask("QQP", "question1", "question2", "is_duplicate", _BINARY, "f1"),
    GlueTask("MNLI", "sentence1", "sentence2", "gold_label", ("contradiction", "entailment", "neutral"), "accuracy",
             dev=("dev_matched", "dev_mismatched"), test=(("test_matched", "-m"), ("test_mismatched", "-mm"))),
    GlueTask("QNLI", "question", "sentence", "label", _NLI2, "accuracy"),
    GlueTask("RTE", "sentence1", "sentence2", "label", _NLI2, "accuracy"),
    GlueTask("WNLI", "sentence1", "sentence2", "label", _BINARY, "accuracy"),
]}  # fmt: skip
"""The nine GLUE tasks by folder name."""
_COLA_LABEL, _COLA_TEXT = 1, 3  # CoLA train/dev: source, label, author's mark, sentence


def glue_task_of(folder: str | Path, name: str | None = None) -> GlueTask:
    """The task of a GLUE folder: ``name`` if given, else the folder's own name (``glue_data/RTE``),
    either matched without regard to case (``sst-2``, ``SST2``)."""
    key = (name or Path(folder).name).upper().replace("-", "")
    for task in GLUE_TASKS.values():
        if task.name.upper().replace("-", "") == key:
            return task
    given = f"glue_task: {name!r}" if name else f"path: the folder name {Path(folder).name!r}"
    raise DataFileError(f"{given} is not a GLUE task; name one of {', '.join(GLUE_TASKS)} "
                        f"(the folder as GLUE's download names it, or --data.glue_task)")


@dataclass
class GluePart:
    """The rows of one GLUE file."""

    texts: list[str]
    """First text per example."""
    pairs: list[str] | None
    """Second text per example (pair tasks), else None."""
    labels: list[str] | None
    """Label (or STS-B score) as written, per example; None for a test file."""
    ids: list[str]
    """The ``index`` (QQP: ``id``) column of a test file, else the row number (0-based)."""
    path: Path
    """The file read."""


def _rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataFileError(f"path: no such file: {path} (a GLUE task folder holds train.tsv, dev.tsv and test.tsv)")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return [row for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from None


def _column(path: Path, header: list[str], name: str) -> int:
    if name not in header:
        raise DataFileError(f"{path}: no column {name!r} in the header ({', '.join(header)}); is this the GLUE layout?")
    return header.index(name)


def read_glue_part(folder: str | Path, task: GlueTask, stem: str, labelled: bool) -> GluePart:
    """Read ``<folder>/<stem>.tsv`` of ``task``; ``labelled`` for train/dev, False for test files.

    Raises:
        DataFileError: a missing file, a missing column, a row with too few fields or an unknown label,
            naming the file and line.
    """
    path = Path(folder) / f"{stem}.tsv"
    rows = _rows(path)
    if not rows:
        raise DataFileError(f"{path}: the file is empty")
    if labelled and not task.header:
        body, first = rows, 1
        text_at, pair_at, label_at, id_at = _COLA_TEXT, None, _COLA_LABEL, None
    else:
        header, body, first = rows[0], rows[1:], 2
        text_at = _column(path, header, task.text)
        pair_at = _column(path, header, task.pair) if task.pair else None
        label_at = _column(path, header, task.label) if labelled else None
        id_at = None if labelled else _column(path, header, "id" if "id" in header else "index")
    needed = max(i for i in (text_at, pair_at, label_at, id_at) if i is not None) + 1
    if labelled and task.header and label_at == len(rows[0]) - 1:
        label_at = -1  # the last field, as the GLUE baselines read it (robust to a stray tab in a sentence)
    texts, pairs, labels, ids = [], [], [], []
    for line, row in enumerate(body, start=first):
        if len(row) < needed:
            raise DataFileError(f"{path} line {line}: {len(row)} tab-separated fields, expected at least {needed}")
        texts.append(row[text_at])
        if pair_at is not None:
            pairs.append(row[pair_at])
        if label_at is not None:
            labels.append(_label(path, line, task, row[label_at]))
        ids.append(row[id_at] if not labelled else str(line - first))
    if not texts:
        raise DataFileError(f"{path}: the file has no examples")
    return GluePart(texts, pairs if pair_at is not None else None, labels if labelled else None, ids, path)


def _label(path: Path, line: int, task: GlueTask, value: str) -> str:
    value = value.strip()
    if task.labels is None:
        try:
            float(value)
        except ValueError:
            raise DataFileError(f"{path} line {line}: score {value!r} is not a number") from None
    elif value not in task.labels:
        raise DataFileError(f"{path} line {line}: label {value!r} is not one of {task.name}'s {', '.join(task.labels)}")
    return value


def write_glue_submission(out_dir: str | Path, task: GlueTask, suffix: str, ids: Sequence[str],
                          predictions: Sequence[str | float]) -> Path:
    """Write ``<out_dir>/<task><suffix>.tsv`` as the GLUE server takes it: ``index	prediction``, then
    one row per test example in file order (labels as written in the data, STS-B scores to 3 decimals)."""
    from hybridformer.io import write_text

    if len(ids) != len(predictions):
        raise ValueError(f"predictions: {len(predictions)} for {len(ids)} test examples")
    lines = ["index\tprediction"]
    lines += [f"{i}\t{p:.3f}" if isinstance(p, float) else f"{i}\t{p}" for i, p in zip(ids, predictions)]
    return write_text(Path(out_dir) / f"{task.name}{suffix}.tsv", "\n".join(lines) + "\n")


def glue_dataset(part: GluePart, task: GlueTask, name: str) -> TextDataset:
    """``part`` as a :class:`TextDataset`: classes in the official order, STS-B's scores as regression
    targets (one label name, ``score``), a test part unlabelled (placeholder labels, ``labelled=False``)."""
    n = len(part.texts)
    names = ["score"] if task.labels is None else list(task.labels)
    if part.labels is None:
        labels, targets = [0] * n, None
    elif task.labels is None:
        labels, targets = [0] * n, [float(v) for v in part.labels]
    else:
        labels, targets = [task.labels.index(v) for v in part.labels], None
    return TextDataset(texts=part.texts, labels=labels, label_names=names, text_pairs=part.pairs, ids=part.ids,
                       name=name, targets=targets, labelled=part.labels is not None)
