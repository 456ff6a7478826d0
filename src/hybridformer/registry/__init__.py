"""The one model contract: every model family is saved by :func:`save_model` as one folder format
(:mod:`hybridformer.model_folder`) and read by :func:`load_model`, which also takes a flavor name
(``tiny``, ``base``, ``minilm``). The registry (:data:`ARCHITECTURES`) maps a folder's
``architecture`` to its model class, config class and recipe family; the commands ask it which
recipes to run instead of probing folders.

    from hybridformer.registry import load_model, save_model
    model = load_model("runs/sentiment/model")     # a TextClassifier (or its int8 form)
    save_model(model, "runs/copy", tokenizer=tok)
"""

from hybridformer.registry.architectures import (
    ARCHITECTURES,
    FAMILIES,
    FLAVORS,
    Architecture,
    Family,
    Flavor,
    architecture_of,
)
from hybridformer.registry.folders import architecture_at, family_of, load_model, save_model

__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "FLAVORS",
    "Architecture",
    "Family",
    "Flavor",
    "architecture_at",
    "architecture_of",
    "family_of",
    "load_model",
    "save_model",
]
