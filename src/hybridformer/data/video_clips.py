"""Video classification from a folder of clips and a CSV of ``path,label`` rows (Kinetics-style).

    clips/labels.csv:   path,label[,split]
                        walk/001.mp4,walking
                        jump/a.npy,jumping,test

Paths are relative to the CSV's folder (or absolute); a clip is anything
:func:`~hybridformer.data.load_video` reads (``.mp4``/``.avi``/``.mkv``/``.webm``/``.mov`` through PyAV,
a ``.npy`` array, a folder of frames), decoded with its limits. ``num_frames`` frames are sampled
uniformly over the whole clip (frame ``round(i * (n - 1) / (num_frames - 1))``), resized to
``frame_size`` and converted to RGB. Classes are the sorted distinct labels. A ``split`` column
(``train`` / ``val`` / ``validation`` / ``test``) places the rows; without it the clips are split
80/10/10 by a hash of their paths (stratified). Each clip is decoded once when read, so a bad one is
named here and stops the run or is skipped (:class:`BadFiles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .bad_files import BadFileError, BadFiles
from .image_text import Splits, split_indices
from .images import ImageInputError, load_video
from .moving_mnist import VideoExample
from .user_pairs import read_rows

__all__ = ["ClipRecord", "ClipDataset", "sample_frames", "read_clip_table"]

_PATH_COLUMNS = ("path", "video", "clip", "file_name", "filename")
_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def sample_frames(clip: Tensor, num_frames: int) -> Tensor:
    """``num_frames`` frames spread uniformly over ``clip`` (C, T, H, W) -> (C, num_frames, H, W);
    a clip shorter than ``num_frames`` repeats frames."""
    n = clip.shape[1]
    index = torch.linspace(0, n - 1, num_frames).round().long()  # (num_frames,) first and last included
    return clip.index_select(1, index)


@dataclass(frozen=True)
class ClipRecord:
    """One clip file and its class."""

    path: Path
    """The clip."""
    label: int
    """Index into the set's ``label_names``."""


@dataclass(eq=False)
class ClipDataset(Dataset[VideoExample]):
    """Clips read when indexed; ``dataset[i]`` is a :class:`VideoExample` whose ``label`` and
    ``direction`` both hold the class (user clips have no motion direction)."""

    records: list[ClipRecord]
    """The clips."""
    label_names: list[str]
    """Class names in index order."""
    num_frames: int = 8
    """Frames sampled per clip."""
    frame_size: int = 32
    """Side every frame is resized to."""

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> VideoExample:
        record = self.records[index]
        clip = sample_frames(load_video(record.path, channels=3, size=self.frame_size), self.num_frames)
        name = self.label_names[record.label]
        return VideoExample(clip=clip, caption=f"a video of {name}", label=record.label, direction=record.label,
                            label_name=name, clip_id=str(record.path))

    def subset(self, indices: list[int]) -> ClipDataset:
        """The clips at ``indices``."""
        return ClipDataset([self.records[i] for i in indices], self.label_names, self.num_frames, self.frame_size)


def read_clip_table(path: str | Path, bad: BadFiles, *, num_frames: int = 8, frame_size: int = 32,
                    seed: int = 0) -> Splits[ClipDataset]:
    """The splits of a ``path,label[,split]`` CSV of clips (see the module docstring)."""
    path = Path(path)
    rows: list[tuple[Path, str, str | None]] = []
    for number, (_, row) in enumerate(read_rows(path), 2):
        where = f"{path}:{number}"
        column = next((c for c in _PATH_COLUMNS if c in row), None)
        if column is None or "label" not in row:
            raise BadFileError(f"{path}: a clip table needs a path column (one of {list(_PATH_COLUMNS)}) and 'label'; found {list(row)}")
        file, label, split = (row.get(column) or "").strip(), (row.get("label") or "").strip(), row.get("split")
        if not file or not label:
            bad.bad(where, "the path or the label is empty")
            continue
        if split is not None and split.strip().lower() not in _SPLITS:
            bad.bad(where, f"split {split!r} is not one of {sorted(_SPLITS)}")
            continue
        clip = Path(file) if Path(file).is_absolute() else path.parent / file
        rows.append((clip, label, _SPLITS[split.strip().lower()] if split is not None else None))
    names = sorted({label for _, label, _ in rows})
    index = {name: i for i, name in enumerate(names)}
    kept: list[tuple[ClipRecord, str | None]] = []
    for clip, label, split in rows:
        try:
            load_video(clip, channels=3, size=frame_size)
            kept.append((ClipRecord(clip, index[label]), split))
        except ImageInputError as err:
            bad.bad(clip, str(err).removeprefix(f"{clip}: "))
    if not kept:
        raise BadFileError(f"{path}: no readable clip ({len(rows)} listed)")
    full = ClipDataset([r for r, _ in kept], names, num_frames, frame_size)
    if any(split is not None for _, split in kept):
        chosen = {s: [i for i, (_, sp) in enumerate(kept) if (sp or "train") == s] for s in ("train", "validation", "test")}
        chosen["test"] = chosen["test"] or chosen["validation"]
        chosen["validation"] = chosen["validation"] or chosen["test"]
    else:
        chosen = split_indices([str(r.path) for r, _ in kept], [r.label for r, _ in kept], (0.8, 0.1, 0.1), seed)
    return Splits(*(full.subset(chosen[s]) for s in ("train", "validation", "test")))
