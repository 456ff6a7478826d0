"""``save_model`` and ``load_model``: the one writer and the one loader of every model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from hybridformer.compression import quantization_of
from hybridformer.config import to_dict
from hybridformer.model_folder import FolderMeta, is_model_folder, read_meta, read_tensors, write_folder
from hybridformer.registry.architectures import ARCHITECTURES, FAMILIES, FLAVORS, Architecture, Family, architecture_of

__all__ = ["architecture_at", "family_of", "load_model", "save_model"]


def save_model(model: nn.Module, path: str | Path, tokenizer: Any = None) -> Path:
    """Write ``model`` (float or int8, any registered architecture) as a folder of the one format.

    ``hybridformer.json`` and ``model.safetensors`` are (re)written; a given Hugging Face tokenizer is
    saved beside them; every other file already in the folder is left as it is.

    Raises:
        ValueError: an unregistered model class, or an int8 model of an architecture without an int8 form.
    """
    arch = architecture_of(model)
    spec = quantization_of(model)
    config = to_dict(model.config)
    if spec is None:
        meta, tensors = FolderMeta(arch.name, config), model.state_dict()
    elif arch.pack_int8 is None:
        raise ValueError(f"model: {arch.name} has no int8 folder form")
    else:
        tensors, extra = arch.pack_int8(model)
        meta = FolderMeta(arch.name, config, spec.to_dict(), extra)
    folder = write_folder(path, meta, tensors)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder


def architecture_at(ref: str | Path) -> Architecture:
    """The registry entry of a flavor name or a model folder (ours, or a Hugging Face BERT/RoBERTa one:
    a ``TextEncoder``), read without loading any weights.

    Raises:
        FileNotFoundError: neither a flavor nor an existing folder; ValueError: an unknown architecture.
    """
    if str(ref) in FLAVORS:
        return ARCHITECTURES[FLAVORS[str(ref)].architecture]
    folder = Path(ref)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {ref} (a model folder holds hybridformer.json; "
                                f"flavors: {', '.join(FLAVORS)})")
    if not is_model_folder(folder):
        if (folder / "config.json").is_file():
            return ARCHITECTURES["TextEncoder"]  # a Hugging Face BERT/RoBERTa folder
        raise FileNotFoundError(f"{ref}: not a model folder (no hybridformer.json or config.json)")
    name = read_meta(folder).architecture
    if name not in ARCHITECTURES:
        raise ValueError(f"{folder}: unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def family_of(ref: str | Path) -> Family:
    """The recipe family of a flavor name or a model folder."""
    return FAMILIES[architecture_at(ref).family]


def load_model(ref: str | Path, **overrides: Any) -> nn.Module:
    """The model a flavor name (``tiny``, ``base``, ``minilm``) or a folder holds, float or int8.

    Args:
        ref: a flavor name or a folder (ours, or a Hugging Face BERT/RoBERTa one).
        overrides: passed to the flavor's builder, or to the architecture's ``from_pretrained``
            (e.g. ``max_positions`` or ``attention`` changes of a text model).

    Raises:
        FileNotFoundError / ValueError: what :func:`architecture_at` and the loaders raise (they name the folder).
    """
    if str(ref) in FLAVORS:
        return FLAVORS[str(ref)].build(**overrides)
    arch = architecture_at(ref)
    if not is_model_folder(ref) or read_meta(ref).quantization is None:
        return arch.model_class.from_pretrained(ref, **overrides)
    if arch.load_int8 is None:
        raise ValueError(f"{ref}: an int8 {arch.name}, which has no int8 form")
    meta = read_meta(ref)
    state, source = read_tensors(ref)
    return arch.load_int8(meta, state, source, **overrides)
