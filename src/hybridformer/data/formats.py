"""One dispatcher from the user's ``--data.path`` (and ``--data.format``) to a reader.

A *format* is the layout of the files; the *kind* of data a task needs picks the reader within it:

============  ==========================================================  ===============================
format        layout                                                      kinds it holds
============  ==========================================================  ===============================
imagefolder   folder + ``metadata.jsonl|csv`` (``file_name``, caption),   pairs; classes (one folder per
              and/or one sub-folder per class (torchvision ImageFolder)   class, or train/ val/ trees)
csv           a ``.csv`` table: image path + caption, or clip ``path,     pairs; clips
              label[,split]``
jsonl         a ``.jsonl`` table of image paths + captions, or of VQA      pairs; vqa
              ``image``, ``question``, ``answers``
coco          ``captions_*.json`` + its image folder                      pairs
webdataset    tar shards ``dir/{000000..000099}.tar`` (jpg/png + txt)     pairs (streamed)
vqa-v2        ``*questions*.json`` + ``*annotations*.json`` + COCO images  vqa
============  ==========================================================  ===============================

:func:`detect_format` names the layout of a path; an unknown layout is one error that says what was
found and lists the formats. :func:`read_user_data` reads a path as one kind and returns its
:class:`Splits` (a streamed set has no held-out part: its ``validation`` and ``test`` are the first
examples of the same stream, so evaluate on a separate shard pattern).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from .bad_files import BadFileError, BadFiles
from .class_folder import is_class_folder, read_class_folder
from .image_text import ImageTextDataset, Splits, split_indices
from .user_pairs import pairs_dataset, read_coco_captions, read_imagefolder_pairs, read_pair_table
from .video_clips import read_clip_table
from .vqa import VQADataset
from .vqa_files import read_vqa_jsonl, read_vqa_v2
from .webdataset_pairs import WebDatasetPairs, expand_shards, hold_out_shards

__all__ = ["FORMATS", "KINDS", "UserDataOptions", "detect_format", "read_user_data", "StreamHead"]

KINDS = ("pairs", "classes", "clips", "vqa")
"""What a task reads: image-text pairs, images with classes, labelled clips, VQA questions."""


@dataclass(frozen=True)
class UserDataOptions:
    """How to read the user's files (from the data section of a run)."""

    bad: BadFiles
    """The bad-file policy and log."""
    image_size: int | None = 32
    """Side images (and frames) are resized to when read."""
    caption_column: str | None = None
    """The caption column of a table / metadata file (None: the first of ``caption``, ``text``, ...)."""
    image_dir: str | None = None
    """The image folder of a COCO captions or VQA-v2 file (None: found beside it)."""
    num_frames: int = 8
    """Frames sampled uniformly per clip."""
    seed: int = 0
    """The split seed (and the shard order of a stream)."""


def _pair_splits(dataset: ImageTextDataset, seed: int) -> Splits[ImageTextDataset]:
    """80/10/10 by a hash of the image file, so every caption of an image lands in the same split."""
    parts = split_indices(dataset.ids, dataset.labels, (0.8, 0.1, 0.1), seed)
    return Splits(*(dataset.subset(parts[s]) for s in ("train", "validation", "test")))


def _imagefolder_pairs(path: Path, o: UserDataOptions) -> Splits[Any]:
    if (path / "metadata.jsonl").is_file() or (path / "metadata.csv").is_file():
        records = read_imagefolder_pairs(path, o.bad, o.caption_column)
        return _pair_splits(pairs_dataset(records, o.bad, size=o.image_size, name=path.name), o.seed)
    return read_class_folder(path, o.bad, size=o.image_size, seed=o.seed)  # captions: "a photo of a <class>"


def _imagefolder_classes(path: Path, o: UserDataOptions) -> Splits[Any]:
    if not is_class_folder(path):
        raise BadFileError(f"{path}: image classification needs one sub-folder of images per class "
                           "(torchvision ImageFolder: photos/cat/1.jpg, photos/dog/2.jpg)")
    return read_class_folder(path, o.bad, size=o.image_size, seed=o.seed)


def _table_pairs(path: Path, o: UserDataOptions) -> Splits[Any]:
    records = read_pair_table(path, o.bad, o.caption_column)
    return _pair_splits(pairs_dataset(records, o.bad, size=o.image_size, name=path.stem), o.seed)


def _coco_pairs(path: Path, o: UserDataOptions) -> Splits[Any]:
    if path.is_dir():
        found = sorted(path.glob("captions_*.json")) + sorted(path.glob("annotations/captions_*.json"))
        if not found:
            raise BadFileError(f"{path}: holds no captions_*.json (nor annotations/captions_*.json)")
        path = found[0]
    records = read_coco_captions(path, o.bad, o.image_dir)
    return _pair_splits(pairs_dataset(records, o.bad, size=o.image_size, name=path.stem), o.seed)


def _clips(path: Path, o: UserDataOptions) -> Splits[Any]:
    return read_clip_table(path, o.bad, num_frames=o.num_frames, frame_size=o.image_size or 32, seed=o.seed)


@dataclass(eq=False)
class StreamHead(Dataset):
    """The first ``n`` examples of a stream as a map-style set (read on first use): the evaluation part
    of a streamed set (the first ``n`` samples of its held-out shards, kept in memory)."""

    stream: Any
    """An iterable dataset."""
    n: int = 512
    """How many examples to keep."""

    def __post_init__(self) -> None:
        self._items: list[Any] | None = None

    def _all(self) -> list[Any]:
        if self._items is None:
            self._items = list(islice(iter(self.stream), self.n))
        return self._items

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, index: int) -> Any:
        return self._all()[index]


def _webdataset_pairs(path: Path | str, o: UserDataOptions) -> Splits[Any]:
    train, held_out = hold_out_shards(expand_shards(str(path)))
    stream = WebDatasetPairs(train, o.bad, size=o.image_size, seed=o.seed)
    head = StreamHead(WebDatasetPairs(held_out, o.bad, size=o.image_size, seed=o.seed, split_ranks=False))
    return Splits(stream, head, head)


def _vqa_splits(dataset: VQADataset, o: UserDataOptions) -> Splits[VQADataset]:
    """The questions whose image decodes (each image once; a bad one to ``o.bad``), split 80/10/10 by a
    hash of the image id, so every question about an image lands in the same split."""
    readable: dict[int, bool] = {}
    for q in dataset.questions:
        if q["image_id"] not in readable:
            try:
                dataset.images(q["image_id"])
                readable[q["image_id"]] = True
            except ValueError as err:  # the reader's lookup names the file
                readable[q["image_id"]] = False
                where, _, reason = str(err).partition(": ")
                o.bad.bad(where, reason or f"image {q['image_id']} is unreadable")
    questions = [q for q in dataset.questions if readable[q["image_id"]]]
    if not questions:
        raise BadFileError(f"{dataset.name}: no question with a readable image ({len(dataset.questions)} listed)")
    parts = split_indices([str(q["image_id"]) for q in questions], [0] * len(questions), (0.8, 0.1, 0.1), o.seed)
    return Splits(*(VQADataset([questions[i] for i in parts[s]], dataset.annotations, dataset.images, dataset.name)
                    for s in ("train", "validation", "test")))


def _vqa_v2(path: Path, o: UserDataOptions) -> Splits[Any]:
    return _vqa_splits(read_vqa_v2(path, o.image_dir, size=o.image_size), o)


def _vqa_jsonl(path: Path, o: UserDataOptions) -> Splits[Any]:
    return _vqa_splits(read_vqa_jsonl(path, o.image_dir, size=o.image_size), o)


FORMATS: dict[str, dict[str, Callable[[Any, UserDataOptions], Splits[Any]]]] = {
    "imagefolder": {"pairs": _imagefolder_pairs, "classes": _imagefolder_classes},
    "csv": {"pairs": _table_pairs, "clips": _clips},
    "jsonl": {"pairs": _table_pairs, "vqa": _vqa_jsonl},
    "coco": {"pairs": _coco_pairs},
    "webdataset": {"pairs": _webdataset_pairs},
    "vqa-v2": {"vqa": _vqa_v2},
}
"""format -> {kind -> reader(path, options) -> Splits}."""


def _json_keys(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    return set(data) if isinstance(data, dict) else set()


def _folder_format(path: Path) -> str | None:
    if (path / "metadata.jsonl").is_file() or (path / "metadata.csv").is_file():
        return "imagefolder"
    if list(path.glob("*.tar")):
        return "webdataset"
    if list(path.glob("captions_*.json")) or list(path.glob("annotations/captions_*.json")):
        return "coco"
    if list(path.glob("*questions*.json")) and list(path.glob("*annotations*.json")):
        return "vqa-v2"
    if is_class_folder(path):
        return "imagefolder"
    return None


def _file_format(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".tar":
        return "webdataset"
    if suffix in (".csv", ".jsonl"):
        return suffix[1:]
    if suffix == ".json":
        keys = _json_keys(path)
        if {"images", "annotations"} <= keys:
            return "coco"
        if "questions" in keys or "annotations" in keys:
            return "vqa-v2"
    return None


def _found(path: Path) -> str:
    if not path.exists():
        return "nothing (the path does not exist)"
    if path.is_file():
        return f"a {path.suffix or 'suffix-less'} file"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    return f"a folder holding {names[:8]}{' ...' if len(names) > 8 else ''}" if names else "an empty folder"


def detect_format(path: str | Path) -> str:
    """The format of ``path`` (see the module's table); :class:`BadFileError` saying what was found
    and which formats exist when none fits."""
    text = str(path)
    if any(c in text for c in "{*?[") or text.endswith(".tar"):
        return "webdataset"
    p = Path(path)
    name = (_folder_format(p) if p.is_dir() else _file_format(p) if p.is_file() else None)
    if name is None:
        raise BadFileError(f"{path}: cannot tell its data format: found {_found(p)}; name one with --data.format "
                           f"({', '.join(FORMATS)}); see docs/data.md")
    return name


def read_user_data(path: str | Path, kind: str, options: UserDataOptions, format: str | None = None) -> Splits[Any]:
    """The :class:`Splits` of the user's data at ``path``, read as ``kind`` (one of :data:`KINDS`),
    in ``format`` (None: :func:`detect_format`)."""
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {KINDS}, got {kind!r}")
    name = format or detect_format(path)
    if name not in FORMATS:
        raise BadFileError(f"data.format: unknown format {name!r}; choose from {', '.join(FORMATS)}")
    readers = FORMATS[name]
    if kind not in readers:
        fits = [f for f, r in FORMATS.items() if kind in r]
        raise BadFileError(f"{path}: the {name} format holds {' / '.join(readers)}, not {kind}; "
                           f"for {kind} use one of {', '.join(fits)}")
    target: Any = path if name == "webdataset" else Path(path)
    if name != "webdataset" and not Path(path).exists():
        raise BadFileError(f"{path}: not found")
    return readers[kind](target, options)
