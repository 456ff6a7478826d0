"""Batch samplers whose order is a pure function of ``(seed, epoch)``.

Both follow the ``DistributedSampler`` convention: call ``set_epoch(e)`` before iterating epoch ``e``.
Because nothing depends on global RNG state, a resumed run regenerates exactly the batches an
uninterrupted run would see (the Trainer relies on this, and also saves the current epoch's batches).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from .splits import stable_hash

__all__ = ["ShuffledBatchSampler", "LengthBucketBatchSampler"]


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(stable_hash("sampler", seed, epoch) & (2**63 - 1))


def _check(batch_size: int, n: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if n < 1:
        raise ValueError(f"num_examples: the dataset is empty (got {n} examples)")


class ShuffledBatchSampler(Sampler[list[int]]):
    """Random (or sequential) batches of indices ``0..num_examples-1``, reshuffled per epoch.

    Args:
        num_examples: dataset size.
        batch_size: examples per batch.
        shuffle: permute per epoch (False: in order).
        drop_last: drop the final short batch.
        seed: with the epoch, fixes the permutation.
    """

    def __init__(
        self, num_examples: int, batch_size: int, *, shuffle: bool = True, drop_last: bool = False, seed: int = 0
    ):
        _check(batch_size, num_examples)
        self.num_examples, self.batch_size = num_examples, batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.num_examples, generator=_generator(self.seed, self.epoch)).tolist()
        else:
            order = list(range(self.num_examples))
        for b in range(len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]

    def __len__(self) -> int:
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length examples, so dynamic padding adds few pad tokens.

    With ``shuffle=True`` (training): the indices are permuted per epoch, cut into buckets of
    ``bucket_size`` examples, each bucket is sorted by length, the concatenation is cut into batches
    and the batch order is permuted. Batches stay random in content between epochs while each holds
    near-equal lengths. With ``shuffle=False`` (evaluation): all examples sorted longest first (the
    largest batch comes first, so out-of-memory shows at once).

    Args:
        lengths: length of every example (e.g. :func:`hybridformer.data.token_lengths`).
        batch_size: examples per batch.
        bucket_size: examples sorted together; default ``50 * batch_size``. Larger = less padding but
            less randomness.
        shuffle: training order (True) or deterministic longest-first order (False).
        drop_last: drop the one short batch.
        seed: with the epoch, fixes the order.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        bucket_size: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ):
        _check(batch_size, len(lengths))
        bucket_size = 50 * batch_size if bucket_size is None else bucket_size
        if bucket_size < batch_size:
            raise ValueError(f"bucket_size: must be >= batch_size ({batch_size}), got {bucket_size}")
        self.lengths = list(lengths)
        self.batch_size, self.bucket_size = batch_size, bucket_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: -self.lengths[i])
        else:
            generator = _generator(self.seed, self.epoch)
            perm = torch.randperm(n, generator=generator).tolist()
            order = []
            for start in range(0, n, self.bucket_size):
                order.extend(sorted(perm[start : start + self.bucket_size], key=lambda i: self.lengths[i]))
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)
