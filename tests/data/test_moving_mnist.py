"""Moving-MNIST-style clips: deterministic, and the labelled direction is the digit's real motion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybridformer.data.image_text import mnist_image_text_splits
from hybridformer.data.moving_mnist import DIRECTIONS, MovingDigits, moving_mnist_splits


def _centroid(frame: torch.Tensor) -> np.ndarray:
    ink = frame.double()
    rows, cols = torch.meshgrid(torch.arange(frame.shape[0]), torch.arange(frame.shape[1]), indexing="ij")
    return np.array([(ink * rows).sum() / ink.sum(), (ink * cols).sum() / ink.sum()])


def test_clips_move_the_real_digit_in_the_labelled_direction():
    digits = mnist_image_text_splits().test
    clips = MovingDigits(digits, num_frames=8, canvas=64, clips_per_digit=2, seed=0)
    assert len(clips) == 1000
    seen = set()
    for i in range(0, 200, 7):
        example = clips[i]
        assert example.clip.shape == (1, 8, 64, 64) and example.clip.dtype == torch.uint8
        digit = digits[i // 2].image[0]
        # every frame holds the digit, unaltered, somewhere on black
        assert all(int(f.sum()) == int(digit.sum()) for f in example.clip[0])
        d_row, d_col = _centroid(example.clip[0, -1]) - _centroid(example.clip[0, 0])
        angle = math.degrees(math.atan2(-d_row, d_col)) % 360  # screen rows grow downwards
        expected = example.direction * 45
        assert min(abs(angle - expected), 360 - abs(angle - expected)) < 10, (i, angle, expected)
        assert example.label == digits[i // 2].label and DIRECTIONS[example.direction] in example.caption
        seen.add(example.direction)
    assert len(seen) >= 6


def test_clips_are_deterministic_per_index_and_seed():
    digits = mnist_image_text_splits().validation
    a, b = MovingDigits(digits, seed=3), MovingDigits(digits, seed=3)
    assert torch.equal(a[42].clip, b[42].clip) and a[42].caption == b[42].caption
    assert not torch.equal(a[42].clip, MovingDigits(digits, seed=4)[42].clip)
    splits = moving_mnist_splits(num_frames=4)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [4000, 500, 500]
    with pytest.raises(ValueError, match="num_frames"):
        MovingDigits(digits, num_frames=1)
    with pytest.raises(ValueError, match="canvas"):
        MovingDigits(digits, canvas=28)
