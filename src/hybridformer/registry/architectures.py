"""One registry of model families: architecture -> (model class, config class, recipe family, flavors).

Every folder's ``hybridformer.json`` names its ``architecture``; :data:`ARCHITECTURES` says which class
builds it, which config dataclass its ``config`` is, which recipe family trains and evaluates it, how
its int8 form is packed and rebuilt. :data:`FLAVORS` are the named builds (``tiny``, ``base``,
``minilm``) that ``load_model`` takes in place of a folder; :data:`FAMILIES` are what the commands
choose between (the pretraining objectives and the tasks of each family's recipes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from hybridformer.compression import load_classifier, load_multimodal_int8, pack_classifier, pack_multimodal
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.models import MultimodalConfig, MultimodalModel, TextClassifier, TextForMaskedLM
from hybridformer.models.masked_lm import MaskedLMConfig
from hybridformer.models.text_classifier import TextClassifierConfig

__all__ = ["ARCHITECTURES", "FAMILIES", "FLAVORS", "Architecture", "Family", "Flavor", "architecture_of"]


@dataclass(frozen=True)
class Family:
    """A recipe family: the models its recipes train, and the names that select it on the command line."""

    name: str
    """``text`` or ``multimodal``."""
    objectives: tuple[str, ...]
    """Pretraining objectives its ``pretrain`` recipe takes (``--objectives``)."""
    tasks: tuple[str, ...]
    """Tasks its ``finetune`` / ``evaluate`` recipes take as ``--task`` (empty: the task is ``--data.task``)."""


FAMILIES: dict[str, Family] = {
    "text": Family("text", ("mlm",), ()),
    "multimodal": Family(
        "multimodal", ("mlm", "itc", "itm", "caption"),
        ("pretrain", "caption", "image-classification", "vqa", "video-classification", "vqa-zeroshot",
         "retrieval", "zeroshot-classification"),
    ),
}
"""The recipe families, text first (the default when nothing names one)."""


@dataclass(frozen=True)
class Architecture:
    """One model class of the one folder format."""

    name: str
    """The ``architecture`` written in ``hybridformer.json`` (the class name)."""
    model_class: type[nn.Module]
    """Builds the float model (``from_pretrained(path, **overrides)`` reads a float folder)."""
    config_class: type
    """The dataclass of the folder's ``config`` (the model's ``config`` property)."""
    family: str
    """The recipe family (a key of :data:`FAMILIES`)."""
    pack_int8: Callable[[nn.Module], tuple[dict[str, Any], dict[str, Any]]] | None = None
    """An int8 model -> (tensors, extra JSON entries); None: no int8 form."""
    load_int8: Callable[..., nn.Module] | None = None
    """(meta, tensors, source, **overrides) -> the int8 model."""


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("TextEncoder", TextEncoder, TextEncoderConfig, "text"),
        Architecture("TextClassifier", TextClassifier, TextClassifierConfig, "text", pack_classifier, load_classifier),
        Architecture("TextForMaskedLM", TextForMaskedLM, MaskedLMConfig, "text"),
        Architecture("MultimodalModel", MultimodalModel, MultimodalConfig, "multimodal", pack_multimodal,
                     lambda meta, state, source, **_: load_multimodal_int8(meta, state, source)),
    )
}


@dataclass(frozen=True)
class Flavor:
    """A named build ``load_model`` takes in place of a folder."""

    architecture: str
    """What it builds (a key of :data:`ARCHITECTURES`)."""
    build: Callable[..., nn.Module]
    """Builds it (random weights under the current seed, or the bundled checkpoint); keywords pass through."""
    doc: str
    """One line for help texts."""


def _tiny(**kwargs: Any) -> nn.Module:
    from hybridformer.models.multimodal_flavors import multimodal_tiny

    return multimodal_tiny(**kwargs)


def _base(**kwargs: Any) -> nn.Module:
    from hybridformer.models.multimodal_flavors import multimodal_base

    return multimodal_base(**kwargs)


def _minilm(**overrides: Any) -> nn.Module:
    from hybridformer.data import minilm_path

    return TextEncoder.from_pretrained(minilm_path(), **overrides)


FLAVORS: dict[str, Flavor] = {
    "tiny": Flavor("MultimodalModel", _tiny, "the tiny multimodal model (random init: image+video encoders, joint decoder)"),
    "base": Flavor("MultimodalModel", _base, "the article's multimodal sizes (RoBERTa-base, ResNet-152, r3d_18)"),
    "minilm": Flavor("TextEncoder", _minilm, "the bundled pretrained MiniLM text encoder (all-MiniLM-L6-v2)"),
}


def architecture_of(model: nn.Module) -> Architecture:
    """The registry entry of ``model``'s class.

    Raises:
        ValueError: a model class the registry does not hold.
    """
    for arch in ARCHITECTURES.values():
        if type(model) is arch.model_class:
            return arch
    raise ValueError(f"model: {type(model).__name__} is not a registered architecture "
                     f"({', '.join(ARCHITECTURES)})")
