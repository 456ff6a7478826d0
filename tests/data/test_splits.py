"""split_dataset on small hand-made data: duplicates, fractions, order independence."""

from __future__ import annotations

import pytest

from hybridformer.data import TextDataset, split_dataset


def _ds(texts, labels, pairs=None):
    return TextDataset(texts=texts, labels=labels, label_names=["a", "b"], text_pairs=pairs, name="toy")


def test_duplicates_land_in_one_split_and_order_does_not_matter():
    texts = [f"t{i}" for i in range(50)] + ["dup"] * 5
    labels = [i % 2 for i in range(50)] + [1] * 5
    splits = split_dataset(_ds(texts, labels), seed=4)
    holders = [p for p in ("train", "validation", "test") if "dup" in splits[p].texts]
    assert len(holders) == 1 and splits[holders[0]].texts.count("dup") == 5
    # 25 + 1 distinct "b" units and 25 "a" units -> round(0.8 * n) of each in train.
    assert splits.train.label_counts() == {"a": 20, "b": 21 + (4 if holders == ["train"] else 0)}
    reversed_splits = split_dataset(_ds(texts[::-1], labels[::-1]), seed=4)
    assert sorted(reversed_splits.test.texts) == sorted(splits.test.texts)
    assert splits.train.name == "toy"


def test_pairs_are_split_as_units():
    texts = ["same"] * 20
    pairs = [f"p{i}" for i in range(20)]
    splits = split_dataset(_ds(texts, [0] * 20, pairs), fractions=(0.5, 0.25, 0.25))
    assert [len(splits[p]) for p in ("train", "validation", "test")] == [10, 5, 5]
    assert splits.test.text_pairs is not None and len(set(splits.test.text_pairs)) == 5


def test_bad_fractions_and_dataset_errors():
    with pytest.raises(ValueError, match="fractions"):
        split_dataset(_ds(["x"], [0]), fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="labels: expected 2 labels"):
        _ds(["x", "y"], [0])
    with pytest.raises(ValueError, match="outside range"):
        _ds(["x"], [2])
    with pytest.raises(ValueError, match="split: must be"):
        split_dataset(_ds(["x"], [0]))["dev"]
