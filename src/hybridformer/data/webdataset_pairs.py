"""Image-text pairs streamed from WebDataset tar shards (the OpenCLIP / img2dataset convention).

    shards/{000000..000099}.tar   each holding  <key>.jpg|.jpeg|.png|.webp  +  <key>.txt  (+ anything else, ignored)

Tar reading and grouping of a sample's members is the ``webdataset`` package's (PyPI
``webdataset==1.0.2``): it is the reference reader of this layout, streams without an index, and
reports a broken tar through a handler we choose. What we add: the split of the shards, the decoding
under :func:`~hybridformer.data.load_image`'s limits, and the bad-file policy.

**Splitting.** The shard list (in pattern order, reshuffled per epoch by ``seed``, the same order on
every rank) is dealt round-robin to the data-parallel ranks, and each rank's shards round-robin to its
DataLoader workers: every shard is read by exactly one worker of one rank, so ranks see disjoint
shards (:func:`rank_shards`). A rank with fewer shards than ``world_size`` would read none: that is
an error at construction. The rank and world size come from ``torch.distributed`` when it is
initialised, else from the arguments.

**Held-out shards.** :func:`hold_out_shards` keeps the last tenth of the shards (at least one) apart
from training, for evaluation: a stream has no per-sample split that every rank and worker would agree
on without reading it, and whole shards are how OpenCLIP keeps its validation data apart. One shard
alone cannot be split: it is refused for a run that evaluates on held-out data.

**Bad members.** A member that does not decode (``shard.tar:key.jpg``), a sample without an image or
a caption, or a tar that cannot be read stops the run with a :class:`BadFileError` naming it, or
under ``skip`` is recorded in the :class:`BadFiles` log (whose ``spool`` file gathers the workers'
records) and skipped.
"""

from __future__ import annotations

import glob
import random
import tarfile
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .bad_files import BadFileError, BadFiles
from .image_text import ImageTextExample

__all__ = ["IMAGE_EXTENSIONS", "expand_shards", "hold_out_shards", "rank_shards", "count_samples", "WebDatasetPairs"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
"""Member extensions read as the sample's image, in order of preference."""


def expand_shards(pattern: str) -> list[str]:
    """The shard files of ``pattern``: brace ranges (``{000000..000099}.tar``), globs, or a folder
    (its ``*.tar``); every named file must exist."""
    from braceexpand import braceexpand

    path = Path(pattern)
    if path.is_dir():
        names = sorted(str(p) for p in path.glob("*.tar"))
    else:
        names = []
        for part in braceexpand(pattern):
            names.extend(sorted(glob.glob(part)) if glob.has_magic(part) else [part])
    not_tar = [n for n in names if not n.endswith(".tar")]
    if not_tar:
        raise BadFileError(f"{not_tar[0]}: not a .tar shard (a WebDataset pattern names tar files: shards/{{000000..000099}}.tar)")
    missing = [n for n in names if not Path(n).is_file()]
    if missing:
        raise BadFileError(f"{missing[0]}: shard not found ({len(missing)} of the {len(names)} shards of {pattern!r} are missing)")
    if not names:
        raise BadFileError(f"{pattern}: matches no .tar shard")
    return names


def hold_out_shards(shards: list[str]) -> tuple[list[str], list[str]]:
    """(training shards, held-out shards): the last ``max(1, round(len / 10))`` shards, in pattern order,
    are held out for evaluation.

    Raises:
        BadFileError: a single shard (nothing to hold out without reading samples from training).
    """
    if len(shards) < 2:
        raise BadFileError(f"{shards[0] if shards else 'the pattern'}: one shard cannot be split into training and "
                           "held-out evaluation data (the last tenth of the shards, at least one, is held out); "
                           "write the set as two or more shards")
    held = max(1, round(len(shards) / 10))
    return shards[:-held], shards[-held:]


def rank_shards(shards: list[str], rank: int, world_size: int, worker: int = 0, num_workers: int = 1) -> list[str]:
    """The shards one DataLoader worker of one rank reads: rank ``r`` takes shards r, r+W, ...; its
    worker ``w`` of ``K`` takes every K-th of those from the w-th."""
    return shards[rank::world_size][worker::num_workers]


def count_samples(shards: list[str]) -> int:
    """Samples (distinct keys with an image member) in ``shards``, from the tar headers only."""
    total = 0
    for shard in shards:
        keys = set()
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    stem, _, ext = member.name.partition(".")
                    if ext.lower() in IMAGE_EXTENSIONS:
                        keys.add(stem)
        except (tarfile.TarError, OSError):
            pass  # a broken tar is reported, with the policy, when it is streamed
        total += len(keys)
    return total


def _distributed() -> tuple[int, int] | None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return None


class WebDatasetPairs(IterableDataset):
    """Streams :class:`ImageTextExample` s from tar shards (see the module docstring).

    Args:
        pattern: the shards (``dir/{000000..000009}.tar``, a glob, or a folder of ``.tar``), or the list
            of shard files itself.
        bad: the bad-file policy and log (give it a ``spool`` when DataLoader workers read).
        size: resize images to size × size (None keeps them).
        rank, world_size: this process's data-parallel rank (``torch.distributed``'s when initialised).
        seed: shard order of each epoch.
        split_ranks: deal the shards to the data-parallel ranks (training); False: every process reads
            every shard (evaluation data, which each rank scores whole).
    """

    def __init__(self, pattern: str | list[str], bad: BadFiles, *, size: int | None = None, rank: int = 0,
                 world_size: int = 1, seed: int = 0, split_ranks: bool = True) -> None:
        super().__init__()
        self.shards = expand_shards(pattern) if isinstance(pattern, str) else list(pattern)
        if not self.shards:
            raise BadFileError("WebDatasetPairs: no shard given")
        pattern = pattern if isinstance(pattern, str) else f"{self.shards[0]} (+{len(self.shards) - 1} more)"
        self.rank, self.world_size = (_distributed() or (rank, world_size)) if split_ranks else (0, 1)
        if len(self.shards) < self.world_size:
            raise BadFileError(f"{pattern}: {len(self.shards)} shard(s) cannot feed {self.world_size} data-parallel ranks "
                               "(each rank reads whole shards); write more, smaller shards")
        self.bad, self.size, self.seed, self.epoch = bad, size, seed, 0
        self.pattern = pattern
        self._length = count_samples(self.shards) // self.world_size
        if self._length == 0:
            raise BadFileError(f"{pattern}: its {len(self.shards)} shard(s) hold no sample with an image "
                               f"({', '.join(IMAGE_EXTENSIONS)}) for each of {self.world_size} rank(s)")

    def __len__(self) -> int:
        """Samples per rank (the shards' total over the world size), for epoch and schedule arithmetic."""
        return self._length

    def set_epoch(self, epoch: int) -> None:
        """Shuffle the shard order for ``epoch`` (the same on every rank)."""
        self.epoch = epoch

    def my_shards(self) -> list[str]:
        """The shards the calling process (this rank, this DataLoader worker) reads this epoch."""
        order = list(self.shards)
        random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank_shards(order, self.rank, self.world_size, worker, workers)

    def _tar_error(self, exn: Exception) -> bool:
        where = next((a for a in reversed(exn.args) if isinstance(a, str) and a.endswith(".tar")), self.pattern)
        self.bad.bad(where, f"unreadable tar data ({type(exn).__name__}: {exn.args[0] if exn.args else exn})")
        return True  # under skip (error raised above): webdataset goes on with the next member / shard

    def _example(self, sample: dict[str, Any]) -> ImageTextExample | None:
        from .images import ImageInputError, load_image

        key, url = sample.get("__key__", "?"), sample.get("__url__", self.pattern)
        ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
        if ext is None or "txt" not in sample:
            missing = "an image (" + "/".join(IMAGE_EXTENSIONS) + ")" if ext is None else "a caption (.txt)"
            self.bad.bad(f"{url}:{key}", f"sample has no {missing}; it holds {sorted(k for k in sample if not k.startswith('__'))}")
            return None
        name = f"{url}:{key}.{ext}"
        try:
            image = load_image(sample[ext], size=self.size, name=name)
            caption = sample["txt"].decode("utf-8").strip()
        except ImageInputError as err:
            self.bad.bad(name, str(err).removeprefix(f"{name}: "))
            return None
        except UnicodeDecodeError:
            self.bad.bad(f"{url}:{key}.txt", "caption is not UTF-8 text")
            return None
        return ImageTextExample(image=image, caption=caption, label=0, label_name="-", image_id=f"{url}:{key}")

    def __iter__(self) -> Iterator[ImageTextExample]:
        import webdataset as wds

        shards = self.my_shards()
        if not shards:
            return
        stream = wds.WebDataset(shards, handler=self._tar_error, shardshuffle=False, nodesplitter=_all, workersplitter=_all,
                                empty_check=False)
        for sample in stream:
            example = self._example(sample)
            if example is not None:
                yield example


def _all(urls: Any) -> Any:
    """The shards as given: :meth:`WebDatasetPairs.my_shards` has already split them by rank and worker."""
    return urls
