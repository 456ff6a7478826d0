"""The one batch iterator: training, evaluation and calibration all read batches through it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = ["count_batch", "iterate_batches"]


def iterate_batches(
    dataset: Dataset | Sequence[Any],
    collate_fn: Callable[[list[Any]], Mapping[str, Any]],
    batch_sampler: Iterable[Sequence[int]],
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[Mapping[str, Any]]:
    """Collated batches of ``dataset``, one per index list of ``batch_sampler``, in its order.

    Args:
        dataset: a map-style dataset; ``dataset[i]`` goes to ``collate_fn``.
        collate_fn: list of examples -> dict of tensors (e.g. :class:`~hybridformer.data.TextCollator`).
        batch_sampler: index lists (a sampler such as :class:`~hybridformer.data.LengthBucketBatchSampler`,
            or a plain list of lists).
        num_workers: DataLoader worker processes (0: collate in this process).
        pin_memory: pin batches for a faster copy to CUDA.
        generator: seeds the workers (from the caller's run seed, not the global RNG).
    """
    loader = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_sampler=batch_sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=generator,
    )
    yield from loader


def count_batch(batch: Mapping[str, Any]) -> tuple[int, int]:
    """(real tokens, examples) in a CPU batch: the attention mask's ones, else every input id."""
    mask = batch.get("attention_mask")
    ids = batch.get("input_ids")
    first = next((v for v in batch.values() if isinstance(v, Tensor)), None)
    examples = int(first.shape[0]) if first is not None and first.dim() > 0 else 0
    if isinstance(mask, Tensor):
        return int(mask.sum()), examples
    return (int(ids.numel()) if isinstance(ids, Tensor) else 0), examples
