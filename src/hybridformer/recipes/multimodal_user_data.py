"""The multimodal tasks on the user's files (``--data.path``): which kind of data each task reads,
its collator, and a trainer for streamed sets.

    hybridformer pretrain --model tiny --data.path photos/            (imagefolder: metadata.jsonl + images)
    hybridformer pretrain --model tiny --data.path 'shards/{000000..000099}.tar' --train.num_workers 2
    hybridformer finetune --task image-classification --model runs/mm/model --data.path imagenet_style/
    hybridformer finetune --task video-classification --model tiny --data.path clips/labels.csv
    hybridformer evaluate --task retrieval --model runs/mm/model --data.path photos/

The layouts and their detection are :mod:`hybridformer.data.formats`'s. Bad files follow
``data.on_bad_file``; the recipes put :meth:`BadFiles.summary` into ``metrics.json``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from torch.utils.data import DataLoader, IterableDataset

from hybridformer.data import ImageTextCollator, PixelSpec, VideoTextCollator, VQACollator, answer_vocabulary
from hybridformer.data.bad_files import BadFileError, BadFiles
from hybridformer.data.formats import UserDataOptions, detect_format, read_user_data
from hybridformer.training import Trainer

__all__ = ["TASK_KINDS", "USER_VIDEO_PROMPT", "user_task_data", "StreamingTrainer", "make_trainer"]

TASK_KINDS = {"pretrain": "pairs", "caption": "pairs", "image-classification": "classes",
              "video-classification": "clips", "vqa": "vqa"}
"""The kind of data each task reads from the user's files."""
USER_VIDEO_PROMPT = "what happens in this video?"
"""The decoder prompt of video classification on the user's clips."""


def _first(dataset: Any, fraction: float) -> Any:
    from hybridformer.recipes.multimodal_common import _first as first

    return dataset if isinstance(dataset, IterableDataset) else first(dataset, fraction)


def user_task_data(task: str, data: Any, tok: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(train, test, collate, extra) of ``task`` on ``data.path`` (an :class:`MMDataConfig`)."""
    if task not in TASK_KINDS:
        raise ValueError(f"task: {task!r} does not read the user's files; choose from {', '.join(TASK_KINDS)}")
    kind = TASK_KINDS[task]
    fmt = data.format or detect_format(data.path)
    # streamed sets meet bad members in DataLoader workers: their records travel through a spool file
    spool = Path(tempfile.mkdtemp(prefix="hybridformer-bad-files-")) / "bad_files.jsonl" if fmt == "webdataset" else None
    bad = BadFiles(data.on_bad_file, spool=spool)
    options = UserDataOptions(bad=bad, image_size=data.image_size, caption_column=data.caption_column,
                              image_dir=data.image_dir, seed=data.seed)
    splits = read_user_data(data.path, kind, options, fmt)
    pixels = PixelSpec(image_size=data.image_size, channels=3)
    extra: dict[str, Any] = {"bad_files": bad, "format": fmt}
    if kind == "vqa":
        answers = answer_vocabulary(splits.train)
        collate = VQACollator(tok, answers, max_length=data.max_length, pixels=pixels)
        extra["answers"] = answers
    elif kind == "clips":
        collate = VideoTextCollator(tok, max_length=data.max_length, pixels=pixels)
        extra.update(label_names=splits.train.label_names, prompt_ids=tok(USER_VIDEO_PROMPT)["input_ids"], label_key="labels")
    else:
        collate = ImageTextCollator(tok, max_length=data.max_length, pixels=pixels)
        extra["label_names"] = getattr(splits.train, "label_names", ["-"])
    return _first(splits.train, data.train_fraction), splits.test, collate, extra


def _worker_error(err: Exception) -> BadFileError:
    """A :class:`BadFileError` raised in a DataLoader worker, with the worker's traceback text cut
    (the message names the file; the traceback only says where in the reader it was met)."""
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else str(err)
    return BadFileError(last.split("BadFileError: ", 1)[-1])


class StreamingTrainer(Trainer):
    """A :class:`Trainer` over an iterable (streamed) set: each epoch is one pass of a DataLoader with
    ``train.num_workers`` workers over the stream (``set_epoch`` reshuffles the shard order). The data
    position saved in checkpoints is the batch count of the epoch; a resumed run skips that many."""

    def _micro_batches(self) -> Iterator[Mapping[str, Any]]:
        cfg = self.config
        while True:
            self.train_data.set_epoch(self._epoch)  # type: ignore[attr-defined]
            loader = DataLoader(self.train_data, batch_size=cfg.batch_size, collate_fn=self.collate_fn,
                                num_workers=cfg.num_workers, drop_last=cfg.drop_last,
                                pin_memory=self.device.type == "cuda")
            consumed, produced = self._batch_index, 0
            try:
                for batch in loader:
                    produced += 1
                    if produced <= consumed:
                        continue  # resuming: these batches were trained on before the checkpoint
                    self._batch_index += 1
                    yield batch
            except BadFileError as err:
                raise (_worker_error(err) if cfg.num_workers else err) from None
            if produced == 0:
                raise BadFileError(f"the stream of {getattr(self.train_data, 'pattern', 'the data')} gave no batch "
                                   f"of batch_size={cfg.batch_size} (all samples bad, or too few)")
            self._epoch += 1
            self._batch_index = 0


def make_trainer(model: Any, objective: Any, train: Any, config: Any, collate: Any) -> Trainer:
    """A :class:`StreamingTrainer` for a streamed set, else the :class:`Trainer`."""
    cls = StreamingTrainer if isinstance(train, IterableDataset) else Trainer
    return cls(model, objective, train, config, collate)
