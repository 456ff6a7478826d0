"""Image-text pairs from the user's files, in the layouts the field already uses.

* ``imagefolder`` (Hugging Face ``datasets``' layout): a folder holding the images (any depth) and a
  ``metadata.jsonl`` or ``metadata.csv`` with a ``file_name`` column (relative to the folder) and a
  caption column.
* ``csv`` / ``jsonl``: a table of image paths (relative to the table's folder, or absolute) and
  captions; the image column is ``image``, ``file_name``, ``path``, ``filepath`` or ``image_path``.
* ``coco``: a COCO captions file (``captions_train2017.json``: ``images`` with ``id`` and
  ``file_name``, ``annotations`` with ``image_id`` and ``caption``) and the image folder; by default the
  folder next to the file named after its split (``train2017/`` beside ``annotations/``), or
  ``data.image_dir``.

The caption column is ``data.caption_column`` when given, else the first of :data:`CAPTION_COLUMNS`
present. Every reader returns :class:`PairRecord` s; :func:`pairs_dataset` checks each image once
(decodes it under the limits of :func:`~hybridformer.data.load_image`) so that a bad file is met
here, named, and either stops the run or is skipped and recorded (:class:`BadFiles`), never deep in a
DataLoader worker.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from torch import Tensor

from .bad_files import BadFileError, BadFiles
from .image_text import ImageTextDataset
from .images import ImageInputError, load_image

__all__ = ["CAPTION_COLUMNS", "IMAGE_COLUMNS", "PairRecord", "FileImages", "read_imagefolder_pairs",
           "read_pair_table", "read_coco_captions", "pairs_dataset", "read_rows"]

CAPTION_COLUMNS = ("caption", "text", "captions", "title", "sentence")
"""Caption columns tried in order when ``data.caption_column`` is not given."""
IMAGE_COLUMNS = ("image", "file_name", "path", "filepath", "image_path")
"""Image-path columns of a CSV / JSONL table, tried in order."""


@dataclass(frozen=True)
class PairRecord:
    """One image file and its caption, as a reader found them."""

    image: Path
    """The image file."""
    caption: str
    """Its caption."""
    where: str
    """Where the pair was read (``metadata.jsonl:3``), for error messages."""


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, row) of a CSV (a dict per row) or JSONL (any JSON value per line) file; a JSONL
    line that is not JSON is yielded as a :class:`BadFileError` for the caller's policy."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield 0, row  # the reader counts lines itself (a quoted caption may span several)
        return
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                yield number, BadFileError(f"not a JSON line ({err.msg})")


def _column(header: list[str], wanted: str | None, choices: tuple[str, ...], path: Path, what: str) -> str:
    if wanted is not None:
        if wanted not in header:
            raise BadFileError(f"{path}: has no {what} column {wanted!r}; its columns are {header}")
        return wanted
    for name in choices:
        if name in header:
            return name
    raise BadFileError(f"{path}: no {what} column; expected one of {list(choices)} (or name it with "
                       f"--data.caption_column), found {header}")


def _table(path: Path, image_columns: tuple[str, ...], caption_column: str | None, root: Path,
           bad: BadFiles) -> list[PairRecord]:
    records: list[PairRecord] = []
    columns: tuple[str, str] | None = None
    for index, (number, row) in enumerate(read_rows(path), 1):
        where = f"{path}:{number or index + 1}"  # CSV: data row i is line i + 1 (the header is line 1)
        if isinstance(row, BadFileError):
            bad.bad(where, str(row))
            continue
        if not isinstance(row, dict):
            bad.bad(where, f"expected an object with an image and a caption, got {type(row).__name__}")
            continue
        if columns is None:
            header = list(row)
            columns = (_column(header, None, image_columns, path, "image"),
                       _column(header, caption_column, CAPTION_COLUMNS, path, "caption"))
        image, caption = row.get(columns[0]), row.get(columns[1])
        if isinstance(caption, list) and caption and all(isinstance(c, str) for c in caption):
            caption = caption[0]  # a list of captions (captions: [...]) gives its first
        if not isinstance(image, str) or not image.strip():
            bad.bad(where, f"the {columns[0]!r} field is missing or empty")
            continue
        if not isinstance(caption, str) or not caption.strip():
            bad.bad(where, f"the caption field {columns[1]!r} is missing or empty")
            continue
        file = Path(image)
        records.append(PairRecord(file if file.is_absolute() else root / file, caption.strip(), where))
    if columns is None:
        raise BadFileError(f"{path}: holds no rows")
    return records


def read_imagefolder_pairs(folder: str | Path, bad: BadFiles, caption_column: str | None = None) -> list[PairRecord]:
    """Pairs of a Hugging Face ``imagefolder`` (``metadata.jsonl`` or ``metadata.csv`` + images)."""
    folder = Path(folder)
    found = [folder / n for n in ("metadata.jsonl", "metadata.csv") if (folder / n).is_file()]
    if not found:
        raise BadFileError(f"{folder}: an imagefolder needs metadata.jsonl or metadata.csv (with file_name and a caption)")
    return _table(found[0], ("file_name",), caption_column, folder, bad)


def read_pair_table(path: str | Path, bad: BadFiles, caption_column: str | None = None) -> list[PairRecord]:
    """Pairs of a CSV / JSONL table of image paths (relative to its folder) and captions."""
    path = Path(path)
    return _table(path, IMAGE_COLUMNS, caption_column, path.parent, bad)


def _coco_image_dir(path: Path) -> Path:
    split = path.stem.removeprefix("captions_")  # captions_val2017 -> val2017
    for candidate in (path.parent / split, path.parent.parent / split, path.parent / "images"):
        if candidate.is_dir():
            return candidate
    raise BadFileError(f"{path}: cannot find its image folder (looked for {split}/ beside it and beside its folder, "
                       "and images/); name it with --data.image_dir")


def read_coco_captions(path: str | Path, bad: BadFiles, image_dir: str | Path | None = None) -> list[PairRecord]:
    """Pairs of a COCO captions JSON (every caption of an image is one pair)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadFileError(f"{path}: not a JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise BadFileError(f"{path}: a COCO captions file needs 'images' and 'annotations' lists")
    root = Path(image_dir) if image_dir is not None else _coco_image_dir(path)
    files = {img.get("id"): img.get("file_name") for img in data["images"] if isinstance(img, dict)}
    records = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}:annotations[{i}]"
        caption = ann.get("caption") if isinstance(ann, dict) else None
        name = files.get(ann.get("image_id")) if isinstance(ann, dict) else None
        if not isinstance(name, str):
            bad.bad(where, "its image_id is not among the file's images")
        elif not isinstance(caption, str) or not caption.strip():
            bad.bad(where, "the caption is missing or empty")
        else:
            records.append(PairRecord(root / name, caption.strip(), where))
    return records


@dataclass(frozen=True)
class FileImages:
    """Images read from files when indexed (``load_image`` with its limits), resized to ``size``."""

    paths: list[Path]
    """One file per position."""
    size: int | None = None
    """Side to resize to (None keeps the file's)."""
    channels: int = 3
    """1 (grey) or 3 (RGB)."""

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        return load_image(self.paths[index], channels=self.channels, size=self.size)


def pairs_dataset(records: list[PairRecord], bad: BadFiles, *, size: int | None, name: str) -> ImageTextDataset:
    """The records whose image decodes, as an :class:`ImageTextDataset` (one class, ``"-"``; ids are the
    file paths). Each distinct file is decoded once here; a bad one goes to ``bad``'s policy."""
    verdict: dict[Path, bool] = {}
    kept = []
    for record in records:
        if record.image not in verdict:
            try:
                load_image(record.image, size=size)
                verdict[record.image] = True
            except ImageInputError as err:
                verdict[record.image] = False
                bad.bad(record.image, f"{str(err).removeprefix(str(record.image) + ': ')} (listed at {record.where})")
        if verdict[record.image]:
            kept.append(record)
    if not kept:
        raise BadFileError(f"{name}: no readable image-text pair ({len(records)} listed)")
    return ImageTextDataset(images=FileImages([r.image for r in kept], size), captions=[r.caption for r in kept],
                            labels=[0] * len(kept), label_names=["-"], ids=[str(r.image) for r in kept], name=name)
