"""take_subset: the fixed, stratified training budget every variant of an experiment shares."""

from __future__ import annotations

import pytest

from hybridformer.data import TextDataset, take_subset


def test_take_subset_is_exact_fixed_and_stratified():
    ds = TextDataset(texts=[str(i) for i in range(30)], labels=[0] * 20 + [1] * 10, label_names=["a", "b"])
    sub = take_subset(ds, 9, seed=1)
    assert len(sub) == 9 and sub.label_counts() == {"a": 6, "b": 3}
    assert sub.texts == take_subset(ds, 9, seed=1).texts != take_subset(ds, 9, seed=2).texts
    assert take_subset(ds, 100).texts == ds.texts
    with pytest.raises(ValueError, match="n: must be >= 1"):
        take_subset(ds, 0)
