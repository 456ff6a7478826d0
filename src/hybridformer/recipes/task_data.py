"""The ``data`` section of text-classification recipes: a built-in task or the user's own files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from hybridformer.config import check
from hybridformer.data import DatasetSplits, TextDataset, load_builtin, load_text_file, split_dataset
from hybridformer.data.splits import take_subset

__all__ = ["TaskDataConfig", "load_task_data", "load_eval_split"]


@dataclass
class TaskDataConfig:
    """Which labelled text to train and evaluate on, and how long its inputs may be."""

    task: Literal["sentiment", "bbc", "bbc-pairs", "file"] = "sentiment"
    """A built-in set (``sentiment``: movie reviews, ``bbc``: BBC News topics, ``bbc-pairs``: the
    constructed "same topic?" pair task) with its fixed splits, or ``file``: the user's CSV/TSV/JSONL."""
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
        if self.task != "file":
            given = [f for f in ("train_file", "validation_file", "test_file") if getattr(self, f) is not None]
            check(not given, given[0] if given else "task", f"is only used with task=file (task is {self.task!r})")


def _read(config: TaskDataConfig, path: str, label_names: Sequence[str] | None) -> TextDataset:
    return load_text_file(
        path,
        text_column=config.text_column,
        label_column=config.label_column,
        text_pair_column=config.text_pair_column,
        label_names=label_names,
    )


def load_task_data(config: TaskDataConfig) -> DatasetSplits:
    """Train/validation/test splits of the configured task, the training part cut to ``train_subset``.

    Raises:
        ValueError: no training file for ``task=file``, or a problem in a file (the message names the
            file, line and column), or an unknown label in the validation/test file.
        FileNotFoundError: a data package is not installed (the message says which to install).
    """
    if config.task != "file":
        splits = load_builtin(config.task, seed=config.split_seed)
    else:
        if config.train_file is None:
            raise ValueError("data.train_file: task=file needs a training file (CSV, TSV or JSONL)")
        train = _read(config, config.train_file, None)
        names = train.label_names
        # Whatever part has no file of its own is carved out of the training file (10% each).
        val_share = 0.1 if config.validation_file is None else 0.0
        test_share = 0.1 if config.test_file is None else 0.0
        carved = split_dataset(train, fractions=(1.0 - val_share - test_share, val_share, test_share),
                               seed=config.split_seed)
        splits = DatasetSplits(
            train=carved.train,
            validation=(
                carved.validation if config.validation_file is None else _read(config, config.validation_file, names)
            ),
            test=carved.test if config.test_file is None else _read(config, config.test_file, names),
        )
    return DatasetSplits(
        train=_pick(splits.train, config.train_subset, config.subset_seed),
        validation=_pick(splits.validation, config.eval_subset, config.subset_seed),
        test=_pick(splits.test, config.eval_subset, config.subset_seed),
    )


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
        path = config.validation_file if split == "validation" else config.test_file
        if path is None:
            field = "validation_file" if split == "validation" else "test_file"
            raise ValueError(f"data.{field}: task=file needs the file to evaluate on ({split} split)")
        return _pick(_read(config, path, label_names), config.eval_subset, config.subset_seed)
    dataset = load_builtin(config.task, seed=config.split_seed)[split]
    if list(dataset.label_names) != list(label_names):
        raise ValueError(
            f"data.task: {config.task!r} has classes {dataset.label_names}, but the model was trained on "
            f"{list(label_names)}"
        )
    return _pick(dataset, config.eval_subset, config.subset_seed)
