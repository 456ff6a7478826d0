"""The batch convention every layer shares: ``labels`` are the targets, every other key a model input.

It sits at the bottom of the package so the kernels' calibration (``sparsity``) and the objectives
(``losses``) split a batch the one same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["LABELS", "model_inputs"]

LABELS = "labels"
"""The batch key of the targets; every other key is a model input."""


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch without its targets: what goes to ``model(**inputs)``."""
    return {k: v for k, v in batch.items() if k != LABELS}
