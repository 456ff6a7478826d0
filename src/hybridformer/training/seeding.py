"""One seed for a run: the torch, Python and NumPy RNGs, and optionally deterministic kernels."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "use_deterministic"]


def seed_everything(seed: int) -> None:
    """Seed the global torch (CPU and every CUDA device), Python and NumPy RNGs with ``seed``.

    Call it before building a model, so freshly initialised parts (a classification head, the
    attention scorer, FFN gates) are the same in every run of the same seed.
    """
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def use_deterministic(enabled: bool) -> None:
    """Make torch pick deterministic kernels (``torch.use_deterministic_algorithms``) when ``enabled``.

    On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first call; it is set here
    (``:4096:8``) unless already set. An op with no deterministic kernel then raises instead of
    running nondeterministically. CPU runs are deterministic without it.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = False if enabled else torch.backends.cudnn.benchmark
