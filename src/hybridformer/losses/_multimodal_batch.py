"""The model inputs multimodal objectives take from a collated batch (the collators add other keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["CONTEXT_KEYS", "context_of", "require"]

CONTEXT_KEYS = ("images", "image_mask", "videos", "video_mask", "context_ids", "context_mask")
"""Batch keys passed to the multimodal model as its cross-attention context."""


def context_of(batch: Mapping[str, Any]) -> dict[str, Tensor]:
    """The context entries of ``batch`` (images, videos, text context and their masks)."""
    return {k: batch[k] for k in CONTEXT_KEYS if batch.get(k) is not None}


def require(batch: Mapping[str, Any], key: str, objective: str) -> Tensor:
    """``batch[key]`` as a tensor, or a ValueError naming the objective that needs it."""
    value = batch.get(key)
    if not isinstance(value, Tensor):
        raise ValueError(f"{objective}: the batch has no `{key}` tensor (keys: {sorted(batch)})")
    return value
