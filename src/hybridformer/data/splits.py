"""Deterministic, stratified, duplicate-aware train/validation/test splits.

Each distinct input (text, or text + pair) is placed by a SHA-256 hash of ``(seed, input)``, never by
a random generator, so a split depends only on the data and the seed: it is the same on every machine,
Python/NumPy/torch version and input order, and nothing has to be saved to reproduce it. Identical
inputs form one unit, so a duplicate can never sit in training and test at once.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from .dataset import DatasetSplits, TextDataset

__all__ = ["stable_hash", "split_dataset", "take_subset"]


def stable_hash(*parts: object) -> int:
    """A 64-bit integer hash of ``parts`` that is identical across processes and versions."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def split_dataset(
    dataset: TextDataset, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> DatasetSplits:
    """Split ``dataset`` into train/validation/test, stratified by label.

    Within each label the distinct inputs are ordered by ``stable_hash(seed, input)``; the first
    ``round(f_train * n)`` go to train, the next ``round(f_val * n)`` to validation, the rest to test.
    All copies of a duplicated input follow it (a duplicate's stratum is the label of its first copy).
    Examples keep their original relative order inside each split.

    Args:
        dataset: the full dataset.
        fractions: (train, validation, test) fractions, each >= 0, summing to 1.
        seed: changes the assignment; the same seed always gives the same split.

    Returns:
        :class:`DatasetSplits`; each part keeps ``dataset.name`` and ``label_names``.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions: expected three non-negative numbers summing to 1, got {fractions}")
    pairs = dataset.text_pairs
    copies: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for i, text in enumerate(dataset.texts):
        copies[(text, None if pairs is None else pairs[i])].append(i)
    strata: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
    for key, idx in copies.items():
        strata[dataset.labels[idx[0]]].append(key)

    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for label in sorted(strata):
        keys = sorted(strata[label], key=lambda k: stable_hash(seed, k[0], k[1]))
        n_train = round(fractions[0] * len(keys))
        # With no test share, validation takes the whole rest (rounding must not leave one in test).
        n_val = len(keys) - n_train if fractions[2] == 0 else min(round(fractions[1] * len(keys)), len(keys) - n_train)
        bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val), "test": (n_train + n_val, len(keys))}
        for split, (lo, hi) in bounds.items():
            for key in keys[lo:hi]:
                parts[split].extend(copies[key])
    return DatasetSplits(**{split: dataset.subset(sorted(idx)) for split, idx in parts.items()})


def take_subset(dataset: TextDataset, n: int, seed: int = 0) -> TextDataset:
    """A fixed, label-stratified pick of ``n`` examples (all of them if ``n >= len(dataset)``).

    Each label gets its share of ``n`` (largest remainder), filled in ``stable_hash(seed, index)``
    order; the picked examples keep their original order. Use it to cut a training budget the same
    way for every variant of an experiment.
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if n >= len(dataset):
        return dataset.subset(range(len(dataset)))
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(dataset.labels):
        by_label[y].append(i)
    exact = {y: n * len(idx) / len(dataset) for y, idx in by_label.items()}
    quota = {y: int(q) for y, q in exact.items()}
    for y in sorted(exact, key=lambda y: (-(exact[y] - quota[y]), y))[: n - sum(quota.values())]:
        quota[y] += 1
    picked = []
    for y, idx in by_label.items():
        picked.extend(sorted(idx, key=lambda i: stable_hash(seed, "subset", i))[: quota[y]])
    return dataset.subset(sorted(picked))
