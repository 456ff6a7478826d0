"""DataConfig -> load_splits: built-in sets, the user's files (carving missing parts), training subsets."""

from __future__ import annotations

import pytest

from hybridformer.config import ConfigError, load_config
from hybridformer.data import DataConfig, DataFileError, TextDataset, load_splits, take_subset


def _csv(path, rows):
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), encoding="utf-8")
    return str(path)


def test_builtin_with_a_stratified_training_subset():
    splits = load_splits(load_config(DataConfig, overrides=["--dataset", "bbc", "--train_subset", "100"]))
    assert len(splits.train) == 100 and len(splits.test) == 216
    counts = splits.train.label_counts()  # 407/308/336/410/325 of 1,786, scaled to 100
    assert counts == {"business": 23, "entertainment": 17, "politics": 19, "sports": 23, "tech": 18}
    assert splits.train.texts == load_splits(DataConfig(dataset="bbc", train_subset=100)).train.texts


def test_files_carve_missing_parts_and_hold_labels(tmp_path):
    rows = [(f"text number {i}", "pos" if i % 3 else "neg") for i in range(60)]
    train = _csv(tmp_path / "train.csv", rows)
    splits = load_splits(DataConfig(dataset="files", train_file=train))
    assert [len(splits[p]) for p in ("train", "validation", "test")] == [48, 6, 6]
    test = _csv(tmp_path / "test.csv", [("new one", "pos"), ("new two", "neg")])
    only_test = load_splits(DataConfig(dataset="files", train_file=train, test_file=test))
    assert [len(only_test[p]) for p in ("train", "validation", "test")] == [54, 6, 2]
    assert only_test.test.label_names == ["neg", "pos"] and only_test.test.labels == [1, 0]
    bad = _csv(tmp_path / "bad.csv", [("x", "neutral")])
    with pytest.raises(DataFileError, match="not seen in training: 'neutral'"):
        load_splits(DataConfig(dataset="files", train_file=train, validation_file=bad))


def test_config_errors():
    with pytest.raises(ConfigError, match="dataset: must be one of"):
        DataConfig(dataset="imdb")
    with pytest.raises(ConfigError, match="train_file: is required"):
        DataConfig(dataset="files")
    with pytest.raises(ConfigError, match="test_file: only used with dataset 'files'"):
        DataConfig(dataset="sentiment", test_file="x.csv")


def test_take_subset_is_exact_fixed_and_stratified():
    ds = TextDataset(texts=[str(i) for i in range(30)], labels=[0] * 20 + [1] * 10, label_names=["a", "b"])
    sub = take_subset(ds, 9, seed=1)
    assert len(sub) == 9 and sub.label_counts() == {"a": 6, "b": 3}
    assert sub.texts == take_subset(ds, 9, seed=1).texts != take_subset(ds, 9, seed=2).texts
    assert take_subset(ds, 100).texts == ds.texts
    with pytest.raises(ValueError, match="n: must be >= 1"):
        take_subset(ds, 0)
