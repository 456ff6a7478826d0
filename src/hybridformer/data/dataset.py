"""Typed in-memory text classification data: single texts or text pairs with integer labels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from torch.utils.data import Dataset

__all__ = ["TextExample", "TextDataset", "DatasetSplits"]


@dataclass(frozen=True)
class TextExample:
    """One example as the collator receives it."""

    text: str
    """The (first) input text."""
    label: int
    """Class index into the dataset's ``label_names``."""
    text_pair: str | None = None
    """Second text of a sentence-pair task, else None."""
    target: float | None = None
    """The real-valued target of a regression task (STS-B's similarity), else None."""


@dataclass(eq=False)
class TextDataset(Dataset[TextExample]):
    """Texts (optionally text pairs) with integer labels, indexable as a torch ``Dataset``.

    ``dataset[i]`` is a :class:`TextExample`; :class:`hybridformer.data.TextCollator` turns a list of
    them into a padded batch.
    """

    texts: list[str]
    """The inputs, one string per example."""
    labels: list[int]
    """Class index per example, each in ``range(len(label_names))``."""
    label_names: list[str]
    """Human-readable class names; ``label_names[k]`` is class ``k``."""
    text_pairs: list[str] | None = None
    """Second text per example for sentence-pair tasks, else None."""
    ids: list[str] | None = None
    """Optional stable identifier per example (e.g. the source file), else None."""
    name: str = "text"
    """Short name used in logs and result tables."""
    targets: list[float] | None = None
    """Regression target per example (STS-B's 0..5 similarity), else None; a regression set has one
    label name (the predicted quantity) and every label 0."""
    labelled: bool = True
    """False for a part without answers (GLUE's test files): its labels are placeholders, never scored."""

    def __post_init__(self) -> None:
        n = len(self.texts)
        if len(self.labels) != n:
            raise ValueError(f"labels: expected {n} labels (one per text), got {len(self.labels)}")
        for field in ("text_pairs", "ids", "targets"):
            values = getattr(self, field)
            if values is not None and len(values) != n:
                raise ValueError(f"{field}: expected {n} entries (one per text), got {len(values)}")
        if not self.label_names:
            raise ValueError("label_names: must name at least one class")
        bad = sorted({y for y in self.labels if not 0 <= y < len(self.label_names)})
        if bad:
            raise ValueError(f"labels: values {bad[:5]} are outside range(len(label_names)={len(self.label_names)})")

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> TextExample:
        pair = self.text_pairs[index] if self.text_pairs is not None else None
        target = self.targets[index] if self.targets is not None else None
        return TextExample(text=self.texts[index], label=self.labels[index], text_pair=pair, target=target)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return self.text_pairs is not None

    @property
    def is_regression(self) -> bool:
        return self.targets is not None

    def label_counts(self) -> dict[str, int]:
        """Examples per class name, in class order."""
        counts = Counter(self.labels)
        return {name: counts.get(k, 0) for k, name in enumerate(self.label_names)}

    def subset(self, indices: Sequence[int], name: str | None = None) -> TextDataset:
        """A new dataset holding ``indices`` (in that order), with the same label names."""
        idx = list(indices)
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            label_names=list(self.label_names),
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in idx],
            ids=None if self.ids is None else [self.ids[i] for i in idx],
            name=self.name if name is None else name,
            targets=None if self.targets is None else [self.targets[i] for i in idx],
            labelled=self.labelled,
        )


@dataclass
class DatasetSplits:
    """Train/validation/test parts of one dataset (disjoint; same label names)."""

    train: TextDataset
    """Training examples."""
    validation: TextDataset
    """Held-out examples for model selection and early stopping."""
    test: TextDataset
    """Held-out examples reported once, at the end."""

    def __getitem__(self, split: str) -> TextDataset:
        if split not in ("train", "validation", "test"):
            raise ValueError(f"split: must be 'train', 'validation' or 'test', got {split!r}")
        return getattr(self, split)
