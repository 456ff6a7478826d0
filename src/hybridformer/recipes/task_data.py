"""The ``data`` section of text-classification recipes: a built-in task or the user's own files."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from hybridformer.config import ConfigError, check, from_dict
from hybridformer.data import DatasetSplits, TextDataset, load_builtin, load_text_file, split_dataset
from hybridformer.data.files import DataFileError
from hybridformer.data.glue import GlueTask, glue_dataset, glue_task_of, read_glue_part
from hybridformer.data.splits import take_subset
from hybridformer.io import write_json

__all__ = [
    "DATA_RECORD", "TaskDataConfig", "describe_splits", "glue_parts", "glue_task_of_config", "load_eval_split",
    "load_task_data", "read_data_record", "write_data_record",
]

DATA_RECORD = "training_data.json"
"""The file in a saved classifier's folder recording the data settings it was trained with."""
_RECORDED = ("task", "train_file", "validation_file", "test_file", "text_column", "text_pair_column",
             "label_column", "max_length", "split_seed", "path", "format", "glue_task")
_FILES = ("train_file", "validation_file", "test_file", "path")


@dataclass
class TaskDataConfig:
    """Which labelled text to train and evaluate on, and how long its inputs may be."""

    task: Literal["sentiment", "bbc", "bbc-pairs", "file", "glue"] = "sentiment"
    """A built-in set (``sentiment``: movie reviews, ``bbc``: BBC News topics, ``bbc-pairs``: the
    constructed "same topic?" pair task) with its fixed splits, ``file``: the user's CSV/TSV/JSONL, or
    ``glue``: a GLUE task folder (``data.path``; set for you when ``data.path`` or ``data.format`` is given)."""
    path: str | None = None
    """A folder in a known layout: a GLUE task folder as GLUE's download unpacks it
    (``glue_data/RTE`` with train.tsv, dev.tsv, test.tsv; MNLI's dev/test matched and mismatched)."""
    format: Literal["glue"] | None = None
    """The layout of ``data.path``: ``glue`` (the one folder layout of the text tasks; a CSV/TSV/JSONL
    file is ``task=file`` with ``data.train_file``); None: the same."""
    glue_task: str | None = None
    """The GLUE task of ``data.path`` (CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI); None: the
    folder's name. Each task is scored by its official metric and STS-B trained as regression."""
    train_file: str | None = None
    """``task=file``: the training file. A part with no file of its own (validation, test) is carved
    out of it, 10% each, by the same fixed stratified split as the built-in sets."""
    validation_file: str | None = None
    """``task=file``: the validation file (optional)."""
    test_file: str | None = None
    """``task=file``: the test file (optional); its labels must be among the training labels."""
    text_column: str = "text"
    """``task=file``: column (CSV/TSV) or key (JSONL) holding the text."""
    text_pair_column: str | None = None
    """``task=file``: column holding the second text of a sentence-pair task, or None."""
    label_column: str = "label"
    """``task=file``: column holding the label (any string or number)."""
    max_length: int = 128
    """Truncate each input (pair included, special tokens counted) to this many tokens."""
    train_subset: int | None = None
    """Train on a fixed, label-stratified pick of this many training examples (None: all)."""
    eval_subset: int | None = None
    """Evaluate on a fixed, label-stratified pick of this many examples of each evaluated split
    (None: all of it). For quick checks; report results on whole splits."""
    subset_seed: int = 0
    """Chooses the ``train_subset`` and ``eval_subset`` picks; kept apart from the training seed so that every seed and
    variant of an experiment trains on the same examples."""
    split_seed: int = 0
    """Seed of the fixed train/validation/test split (built-in sets and a lone training file)."""
    eval_batch_size: int = 32
    """Examples per batch when evaluating."""

    def __post_init__(self) -> None:
        check(self.max_length >= 2, "max_length", f"must be >= 2, got {self.max_length}")
        check(
            self.train_subset is None or self.train_subset >= 1,
            "train_subset",
            f"must be >= 1 or None, got {self.train_subset}",
        )
        check(
            self.eval_subset is None or self.eval_subset >= 1,
            "eval_subset",
            f"must be >= 1 or None, got {self.eval_subset}",
        )
        check(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        if self.path is not None or self.format is not None or self.glue_task is not None:
            check(self.task in ("sentiment", "glue"), "path", f"reads a folder's own data; leave data.task unset "
                  f"(it is {self.task!r})")
            self.task = "glue"  # the default task gives way to the folder
        if self.task == "glue":
            check(self.path is not None, "path", "task=glue needs the GLUE task folder (--data.path glue_data/RTE)")
        if self.task != "file":
            given = [f for f in ("train_file", "validation_file", "test_file") if getattr(self, f) is not None]
            check(not given, given[0] if given else "task", f"is only used with task=file (task is {self.task!r})")


def _read(config: TaskDataConfig, file_field: str, label_names: Sequence[str] | None) -> TextDataset:
    """Read the file ``config.<file_field>``; errors name the ``data.`` field a user sets, not an argument."""
    try:
        return load_text_file(
            getattr(config, file_field),
            text_column=config.text_column,
            label_column=config.label_column,
            text_pair_column=config.text_pair_column,
            label_names=label_names,
        )
    except DataFileError as err:
        message = str(err)
        if message.startswith("path:"):
            message = f"data.{file_field}:" + message.removeprefix("path:")
        elif message.split(":", 1)[0] in ("text_column", "label_column", "text_pair_column"):
            message = f"data.{message}"
        raise DataFileError(message) from None


def load_task_data(config: TaskDataConfig) -> DatasetSplits:
    """Train/validation/test splits of the configured task, the training part cut to ``train_subset``.

    Raises:
        ValueError: no training file for ``task=file``, or a problem in a file (the message names the
            file, line and column), or an unknown label in the validation/test file.
        FileNotFoundError: a data package is not installed (the message says which to install).
    """
    if config.task == "glue":
        task = glue_task_of_config(config)
        splits = DatasetSplits(train=_glue(config, task, "train"), validation=_glue(config, task, task.dev[0]),
                               test=_glue(config, task, task.test[0][0]))
    elif config.task != "file":
        splits = load_builtin(config.task, seed=config.split_seed)
    else:
        if config.train_file is None:
            raise ValueError("data.train_file: task=file needs a training file (CSV, TSV or JSONL)")
        train = _read(config, "train_file", None)
        names = train.label_names
        # Whatever part has no file of its own is carved out of the training file (10% each).
        val_share = 0.1 if config.validation_file is None else 0.0
        test_share = 0.1 if config.test_file is None else 0.0
        carved = split_dataset(train, fractions=(1.0 - val_share - test_share, val_share, test_share),
                               seed=config.split_seed)
        splits = DatasetSplits(
            train=carved.train,
            validation=(
                carved.validation if config.validation_file is None else _read(config, "validation_file", names)
            ),
            test=carved.test if config.test_file is None else _read(config, "test_file", names),
        )
    return DatasetSplits(
        train=_pick(splits.train, config.train_subset, config.subset_seed),
        validation=_pick(splits.validation, config.eval_subset, config.subset_seed),
        test=_pick(splits.test, config.eval_subset, config.subset_seed),
    )


def glue_task_of_config(config: TaskDataConfig) -> GlueTask:
    """The GLUE task of ``config.path`` (``data.glue_task`` or the folder's name), its folder checked.

    Raises:
        DataFileError: the path is not a folder, or its task is not a GLUE task.
    """
    folder = Path(str(config.path))
    if not folder.is_dir():
        raise DataFileError(f"data.path: {folder} is not a folder (a GLUE task folder such as glue_data/RTE)")
    try:
        return glue_task_of(folder, config.glue_task)
    except DataFileError as err:
        raise DataFileError(f"data.{err}") from None


def _glue(config: TaskDataConfig, task: GlueTask, stem: str) -> TextDataset:
    """One GLUE file of ``config.path`` (a ``test*`` file unlabelled)."""
    part = read_glue_part(str(config.path), task, stem, labelled=not stem.startswith("test"))
    return glue_dataset(part, task, name=f"{task.name}/{stem}")


def glue_parts(config: TaskDataConfig) -> tuple[GlueTask, dict[str, TextDataset], dict[str, TextDataset]]:
    """The task, its dev parts and its test parts (by file stem) for ``evaluate``, picks applied to dev."""
    task = glue_task_of_config(config)
    dev = {stem: _pick(_glue(config, task, stem), config.eval_subset, config.subset_seed) for stem in task.dev}
    test = {stem: _glue(config, task, stem) for stem, _ in task.test}
    return task, dev, test


def _pick(dataset: TextDataset, n: int | None, seed: int) -> TextDataset:
    return dataset if n is None else take_subset(dataset, n, seed=seed)


def load_eval_split(config: TaskDataConfig, split: str, label_names: Sequence[str]) -> TextDataset:
    """The ``split`` part of the configured task, checked against a trained model's ``label_names``.

    For ``task=file`` the file named by ``test_file`` (or ``validation_file`` for the validation split)
    is read alone, so evaluating a user file needs no training file.

    Raises:
        ValueError: the task's classes differ from the model's, or the file holds unknown labels.
    """
    if config.task == "file":
        field = "validation_file" if split == "validation" else "test_file"
        if getattr(config, field) is not None:
            return _pick(_read(config, field, label_names), config.eval_subset, config.subset_seed)
        if config.train_file is None:
            raise ValueError(f"data.{field}: task=file needs the file to evaluate on ({split} split)")
        # The part fine-tuning carved out of the training file: the same fixed split again.
        dataset = load_task_data(dataclasses.replace(config, train_subset=None, eval_subset=None))[split]
        _check_classes(config, dataset, label_names)
        return _pick(dataset, config.eval_subset, config.subset_seed)
    dataset = load_builtin(config.task, seed=config.split_seed)[split]
    _check_classes(config, dataset, label_names)
    return _pick(dataset, config.eval_subset, config.subset_seed)


def _check_classes(config: TaskDataConfig, dataset: TextDataset, label_names: Sequence[str]) -> None:
    if list(dataset.label_names) != list(label_names):
        raise ValueError(
            f"data.task: {config.task!r} has classes {dataset.label_names}, but the model was trained on "
            f"{list(label_names)}"
        )


def describe_splits(config: TaskDataConfig, splits: DatasetSplits) -> list[str]:
    """Lines saying how many examples each split has and where the validation and test splits came from."""
    counts = f"{len(splits.train)} train / {len(splits.validation)} validation / {len(splits.test)} test examples"
    if config.task == "glue":
        lines = [f"data: {counts}; the GLUE folder {config.path} (train.tsv, validation: its first dev file, "
                 f"test: its first test file, unlabelled)"]
    elif config.task != "file":
        origin = f"the built-in fixed stratified 80/10/10 split of {config.task!r} (data.split_seed {config.split_seed})"
        lines = [f"data: {counts}; {origin}"]
    else:
        lines = [f"data: {counts}"]
        for part in ("validation", "test"):
            given = getattr(config, f"{part}_file")
            lines.append(
                f"  {part}: {given}" if given is not None else
                f"  {part}: 10% of {config.train_file} held out (stratified by label, data.split_seed "
                f"{config.split_seed}); set --data.{part}_file to use a file of your own"
            )
    if config.train_subset is not None:
        lines.append(f"  train: a fixed stratified pick of {len(splits.train)} (data.train_subset)")
    if config.eval_subset is not None:
        lines.append(f"  validation/test: fixed stratified picks of at most {config.eval_subset} (data.eval_subset)")
    return lines


def write_data_record(config: TaskDataConfig, label_names: Sequence[str], model_dir: str | Path) -> Path:
    """Record in ``model_dir`` the data settings a model was trained with (files as absolute paths)."""
    record: dict[str, Any] = {name: getattr(config, name) for name in _RECORDED}
    for name in _FILES:
        if record[name] is not None:
            record[name] = str(Path(record[name]).resolve())
    record["label_names"] = list(label_names)
    return write_json(Path(model_dir) / DATA_RECORD, record)


def read_data_record(model_dir: str | Path) -> TaskDataConfig | None:
    """The data settings recorded by :func:`write_data_record`, or None for a folder without them."""
    path = Path(model_dir) / DATA_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return from_dict(TaskDataConfig, {k: v for k, v in record.items() if k in _RECORDED})
    except (json.JSONDecodeError, ConfigError) as err:
        raise ValueError(f"{path}: unreadable data record ({err}); pass the data settings as --data.*") from None
