"""The data section: built-in tasks, the user's files (parts carved from the training file), subsets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hybridformer.config import ConfigError, load_config
from hybridformer.data import load_builtin
from hybridformer.recipes import TaskDataConfig, load_task_data
from hybridformer.recipes.task_data import load_eval_split


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    return path


def test_lone_training_file_is_split_80_10_10(tmp_path: Path) -> None:
    rows = [(f"text number {i}", "pos" if i % 2 else "neg") for i in range(100)]
    splits = load_task_data(TaskDataConfig(task="file", train_file=str(_write(tmp_path / "t.csv", rows))))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (80, 10, 10)
    assert splits.train.label_names == ["neg", "pos"]
    assert not set(splits.train.texts) & set(splits.test.texts)


def test_given_test_file_is_used_and_validation_is_carved(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", [(f"t{i}", str(i % 3)) for i in range(60)])
    test = _write(tmp_path / "test.csv", [("a", "2"), ("b", "0")])
    splits = load_task_data(TaskDataConfig(task="file", train_file=str(train), test_file=str(test)))
    assert (len(splits.train), len(splits.validation)) == (54, 6)
    assert splits.test.texts == ["a", "b"] and splits.test.labels == [2, 0]
    bad = _write(tmp_path / "bad.csv", [("c", "7")])
    with pytest.raises(ValueError, match="'7'"):
        load_task_data(TaskDataConfig(task="file", train_file=str(train), test_file=str(bad)))


def test_subsets_are_fixed_stratified_picks() -> None:
    config = TaskDataConfig(task="bbc", train_subset=50, eval_subset=20)
    splits = load_task_data(config)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (50, 20, 20)
    full = load_builtin("bbc").train
    shares = {name: 50 * n / len(full) for name, n in full.label_counts().items()}
    for name, n in splits.train.label_counts().items():
        assert abs(n - shares[name]) < 1  # stratified: each class gets its share, rounded
    assert set(splits.train.texts) <= set(full.texts)
    assert load_task_data(config).train.texts == splits.train.texts


def test_eval_split_checks_the_model_classes() -> None:
    with pytest.raises(ValueError, match="trained on"):
        load_eval_split(TaskDataConfig(task="sentiment"), "test", ["a", "b", "c"])
    assert len(load_eval_split(TaskDataConfig(task="sentiment", eval_subset=5), "test", ["rotten", "fresh"])) == 5


@dataclass
class _Run:
    data: TaskDataConfig = field(default_factory=TaskDataConfig)


def test_files_only_go_with_task_file() -> None:
    with pytest.raises(ConfigError, match="data.train_file: is only used with task=file"):
        load_config(_Run, None, ["--data.train_file", "x.csv"])
