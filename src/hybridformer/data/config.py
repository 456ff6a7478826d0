"""The ``data`` config section and the one call that turns it into train/validation/test sets."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check
from .dataset import DatasetSplits, TextDataset
from .files import load_text_file
from .splits import split_dataset, take_subset
from .text_datasets import BUILTIN_DATASETS, load_builtin

__all__ = ["DataConfig", "load_splits"]


@dataclass
class DataConfig:
    """Which text classification data to use and how to cut it."""

    dataset: str = "sentiment"
    """A built-in set (``sentiment``, ``bbc``, ``bbc-pairs``) or ``files`` to read the files below."""
    train_file: str | None = None
    """``files`` only: CSV/TSV/JSONL training data (classes are inferred from it)."""
    validation_file: str | None = None
    """``files`` only: validation data; None = carve 10% out of ``train_file``."""
    test_file: str | None = None
    """``files`` only: test data; None = carve 10% out of ``train_file``."""
    text_column: str = "text"
    """``files`` only: column/key of the text."""
    text_pair_column: str | None = None
    """``files`` only: column/key of the second text of a pair task, or None."""
    label_column: str = "label"
    """``files`` only: column/key of the label."""
    split_seed: int = 0
    """Seed of the hash-based splits (built-in sets, or a file carved into parts)."""
    train_subset: int | None = None
    """Train on this many examples only (a fixed, seeded, label-stratified pick), or None for all."""
    max_length: int = 512
    """Tokens per sequence (pair included) after truncation."""

    def __post_init__(self) -> None:
        known = sorted(BUILTIN_DATASETS) + ["files"]
        check(self.dataset in known, "dataset", f"must be one of {known}, got {self.dataset!r}")
        if self.dataset == "files":
            check(self.train_file is not None, "train_file", "is required when dataset is 'files'")
        else:
            given = [f for f in ("train_file", "validation_file", "test_file") if getattr(self, f) is not None]
            check(not given, given[0] if given else "dataset", f"only used with dataset 'files', not {self.dataset!r}")
        subset = self.train_subset
        check(subset is None or subset >= 1, "train_subset", f"must be >= 1 or None, got {subset}")
        check(self.max_length >= 2, "max_length", f"must be >= 2, got {self.max_length}")


def _read(config: DataConfig, path: str, label_names: list[str] | None = None) -> TextDataset:
    return load_text_file(
        path,
        text_column=config.text_column,
        label_column=config.label_column,
        text_pair_column=config.text_pair_column,
        label_names=label_names,
    )


def load_splits(config: DataConfig) -> DatasetSplits:
    """The train/validation/test sets ``config`` describes.

    For ``files``: validation and test files are held to the training file's classes (unknown labels
    are an error); a missing validation or test file is carved out of the training file (10% each,
    stratified, by :func:`hybridformer.data.split_dataset`). ``train_subset`` then trims train only.
    """
    if config.dataset != "files":
        splits = load_builtin(config.dataset, seed=config.split_seed)
    else:
        train = _read(config, config.train_file)  # type: ignore[arg-type]
        val = _read(config, config.validation_file, train.label_names) if config.validation_file else None
        test = _read(config, config.test_file, train.label_names) if config.test_file else None
        if val is None or test is None:
            if val is None and test is None:
                fractions = (0.8, 0.1, 0.1)
            elif val is None:
                fractions = (0.9, 0.1, 0.0)
            else:
                fractions = (0.9, 0.0, 0.1)
            carved = split_dataset(train, fractions=fractions, seed=config.split_seed)
            train = carved.train
            val = carved.validation if val is None else val
            test = carved.test if test is None else test
        splits = DatasetSplits(train=train, validation=val, test=test)
    if config.train_subset is not None:
        splits.train = take_subset(splits.train, config.train_subset, seed=config.split_seed)
    return splits
