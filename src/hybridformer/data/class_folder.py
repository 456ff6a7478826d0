"""Image classification from a torchvision ``ImageFolder`` tree: one folder per class.

    photos/cat/001.jpg  photos/dog/xyz.png  ...          -> split 80/10/10 by a hash of each file path
    photos/train/cat/... photos/val/cat/... [photos/test/cat/...]  -> the folders are the splits

Classes are the sub-folder names in sorted order and images the files with torchvision's
``IMG_EXTENSIONS`` (``torchvision.datasets.folder.make_dataset``, so the classes and their indices
equal ``torchvision.datasets.ImageFolder``'s). Each image is decoded once when read (the limits of
:func:`~hybridformer.data.load_image`), so a bad file is named here and stops the run or is skipped
(:class:`BadFiles`). The caption of an image is ``"a photo of a <class>"``.
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from .bad_files import BadFileError, BadFiles
from .image_text import ImageTextDataset, Splits, split_indices
from .images import ImageInputError, load_image
from .user_pairs import FileImages

__all__ = ["SPLIT_FOLDERS", "is_class_folder", "read_class_folder"]

SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation", "valid"), "test": ("test",)}
"""Sub-folder names read as a split of an ImageNet-style tree."""


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMG_EXTENSIONS for p in folder.iterdir() if p.is_file())


def is_class_folder(folder: Path) -> bool:
    """True when ``folder``'s sub-folders hold images (a class tree, or train/ val/ class trees)."""
    subs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    if (folder / "train").is_dir():
        subs = [p for p in (folder / "train").iterdir() if p.is_dir()]
    return bool(subs) and any(_has_images(p) for p in subs)


def _tree(root: Path, bad: BadFiles, size: int | None, classes: list[str] | None = None) -> ImageTextDataset:
    names, index = find_classes(root)
    if classes is not None and names != classes:
        raise BadFileError(f"{root}: its classes {names} differ from the training folder's {classes}")
    kept: list[tuple[Path, int]] = []
    for file, label in make_dataset(root, index, extensions=IMG_EXTENSIONS, allow_empty=True):
        try:
            load_image(file, size=size)
            kept.append((Path(file), label))
        except ImageInputError as err:
            bad.bad(file, str(err).removeprefix(f"{file}: "))
    if not kept:
        raise BadFileError(f"{root}: no readable image in its class folders {names}")
    return ImageTextDataset(
        images=FileImages([p for p, _ in kept], size), captions=[f"a photo of a {names[y]}" for _, y in kept],
        labels=[y for _, y in kept], label_names=names, ids=[str(p) for p, _ in kept], name=root.name,
    )


def _split_folder(root: Path, split: str) -> Path | None:
    return next((root / n for n in SPLIT_FOLDERS[split] if (root / n).is_dir()), None)


def read_class_folder(root: str | Path, bad: BadFiles, *, size: int | None = None, seed: int = 0) -> Splits[ImageTextDataset]:
    """The splits of a class tree: its ``train/`` / ``val/`` / ``test/`` folders when it has them (a
    missing test split is the validation one, and the reverse), else 80/10/10 of the whole tree
    (stratified by class, by a hash of each file's path under ``seed``)."""
    root = Path(root)
    train_dir = _split_folder(root, "train")
    if train_dir is not None:
        train = _tree(train_dir, bad, size)
        held = {s: _split_folder(root, s) for s in ("validation", "test")}
        if held["validation"] is None and held["test"] is None:
            raise BadFileError(f"{root}: has train/ but no val/ or test/ folder; add one, or point --data.path at a single class tree")
        parts = {s: _tree(d, bad, size, train.label_names) for s, d in held.items() if d is not None}
        return Splits(train, parts.get("validation", parts.get("test")), parts.get("test", parts.get("validation")))
    full = _tree(root, bad, size)
    parts = split_indices([str(Path(i).relative_to(root)) for i in full.ids], full.labels, (0.8, 0.1, 0.1), seed)
    return Splits(*(full.subset(parts[s]) for s in ("train", "validation", "test")))
