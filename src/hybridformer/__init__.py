"""hybridformer: an efficient multimodal transformer (hybrid attention, dynamic sparse activation).

The public names below are imported lazily so ``import hybridformer`` and ``hybridformer --help``
stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "AttentionConfig": "hybridformer.attention",
    "HybridAttention": "hybridformer.attention",
    "hybrid_attention": "hybridformer.attention",
    "GatedFFN": "hybridformer.sparsity",
    "SparsityConfig": "hybridformer.sparsity",
    "prune": "hybridformer.sparsity",
    "TextEncoder": "hybridformer.encoders",
    "TextEncoderConfig": "hybridformer.encoders",
    "TextClassifier": "hybridformer.models",
    "TextForMaskedLM": "hybridformer.models",
    "Trainer": "hybridformer.training",
    "TrainConfig": "hybridformer.training",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hybridformer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
