"""Batch samplers: deterministic per (seed, epoch), complete, and length bucketing cuts padding."""

from __future__ import annotations

import random

import pytest

from hybridformer.data import LengthBucketBatchSampler, ShuffledBatchSampler


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_shuffled_sampler_is_a_pure_function_of_seed_and_epoch():
    a, b = ShuffledBatchSampler(23, 5, seed=1), ShuffledBatchSampler(23, 5, seed=1)
    assert _epoch(a, 3) == _epoch(b, 3)
    assert _epoch(a, 0) != _epoch(a, 1)
    batches = _epoch(a, 0)
    assert len(batches) == len(a) == 5 and [len(x) for x in batches] == [5, 5, 5, 5, 3]
    assert sorted(i for x in batches for i in x) == list(range(23))
    assert len(ShuffledBatchSampler(23, 5, drop_last=True)) == 4
    assert list(ShuffledBatchSampler(4, 3, shuffle=False)) == [[0, 1, 2], [3]]


def test_length_buckets_cut_padding_and_cover_everything():
    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(1000)]

    def pad_fraction(batches):
        padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
        return 1 - sum(lengths) / padded

    bucketed = LengthBucketBatchSampler(lengths, 16, seed=2)
    batches = _epoch(bucketed, 0)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(batches) == len(bucketed) == 63
    shuffled = _epoch(ShuffledBatchSampler(1000, 16, seed=2), 0)
    assert pad_fraction(batches) < 0.1 < 0.4 < pad_fraction(shuffled)
    assert batches == _epoch(LengthBucketBatchSampler(lengths, 16, seed=2), 0)
    assert batches != _epoch(bucketed, 1)
    drop = LengthBucketBatchSampler(lengths, 16, drop_last=True)
    assert all(len(b) == 16 for b in _epoch(drop, 0)) and len(drop) == 62


def test_eval_order_is_longest_first():
    batches = list(LengthBucketBatchSampler([3, 9, 1, 7], 2, shuffle=False))
    assert batches == [[1, 3], [0, 2]]


def test_sampler_errors():
    with pytest.raises(ValueError, match="batch_size: must be >= 1"):
        ShuffledBatchSampler(3, 0)
    with pytest.raises(ValueError, match="dataset is empty"):
        LengthBucketBatchSampler([], 2)
    with pytest.raises(ValueError, match="bucket_size: must be >= batch_size"):
        LengthBucketBatchSampler([1, 2, 3], 2, bucket_size=1)
