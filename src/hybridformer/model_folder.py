"""The one folder format of every model: ``hybridformer.json`` + ``model.safetensors`` (+ the tokenizer).

``hybridformer.json`` holds::

    {"architecture": "TextClassifier", "format_version": 2, "config": {...},
     "quantization": {...}}            # only for an int8 model (hybridformer.compression)

``architecture`` names the entry of :mod:`hybridformer.registry` that builds the model; ``config`` is
that architecture's config dataclass as a dict. ``model.safetensors`` holds every tensor (for an int8
model, the int8 values and scales of :mod:`hybridformer.compression.int8_tensors`). Other files in the
folder (tokenizer files, ``generation_config.json``, ...) belong to whoever wrote them: this module
never rewrites them, and :func:`copy_extras` carries them into a derived folder unchanged.

Folders written before the format was shared still read: the text models' ``{"format": "hybridformer",
"encoder": {...}, ...}`` (format 1) and int8 weights in ``model.int8.safetensors``; an attention config
that names no ``selection`` keeps the scorer, the default it was written under (before issue 24).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from hybridformer.io import atomic_write, write_json

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "FORMAT_VERSION", "FolderMeta", "copy_extras", "is_model_folder",
           "read_meta", "read_tensors", "write_folder"]

CONFIG_FILE = "hybridformer.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
"""2: one schema for every model. 1: the text models' own schema (still read)."""
LEGACY_INT8_WEIGHTS = "model.int8.safetensors"
"""Where int8 folders of format 1 kept their tensors."""
_OWN_FILES = (CONFIG_FILE, WEIGHTS_FILE, LEGACY_INT8_WEIGHTS)
_TEXT_HEAD_FIELDS = {"TextClassifier": ("num_labels", "pooling", "dropout", "label_names"), "TextForMaskedLM": ()}
_CONVERT = "re-save it with hybridformer.registry.save_model(hybridformer.registry.load_model(path), path)"


@dataclass
class FolderMeta:
    """The contents of ``hybridformer.json``."""

    architecture: str
    """The registry's name of the model class (``TextClassifier``, ``MultimodalModel``, ...)."""
    config: dict[str, Any]
    """The architecture's config dataclass, as a dict."""
    quantization: dict[str, Any] | None = None
    """How the model was int8-quantized (``QuantizationSpec.to_dict()``); None for a float model."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Entries a quantized form adds beside ``quantization`` (e.g. ``int8_storage``)."""
    format_version: int = FORMAT_VERSION
    """The version the folder was written with (older ones are converted on reading)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON written to ``hybridformer.json``."""
        data = {"architecture": self.architecture, "format_version": FORMAT_VERSION, "config": self.config}
        if self.quantization is not None:
            data["quantization"] = self.quantization
        return {**data, **self.extra}


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a ``hybridformer.json``."""
    return (Path(path) / CONFIG_FILE).is_file()


def _from_text_v1(meta: dict[str, Any], file: Path) -> FolderMeta:
    """A text model's format-1 JSON (``format``, ``encoder``, ``encoder_prefix``, head fields)."""
    architecture = meta.get("architecture")
    if architecture == "TextEncoder":
        config = meta["encoder"]
    elif architecture in _TEXT_HEAD_FIELDS:
        config = {"encoder": meta["encoder"], **{name: meta[name] for name in _TEXT_HEAD_FIELDS[architecture]}}
    else:
        raise ValueError(f"{file}: an old text-model folder of unknown architecture {architecture!r}; {_CONVERT}")
    return FolderMeta(architecture, config, meta.get("quantization"), format_version=1)


def _keep_old_selection(config: Any) -> Any:
    """Every attention config in ``config`` (a dict with ``kind``, ``window`` and ``global_k``) that names
    no ``selection`` gets ``"scorer"``: it was written when that was the default (before issue 24 made
    it ``"pooled"``), and its weights hold a scorer."""
    if isinstance(config, dict):
        if {"kind", "window", "global_k"} <= config.keys() and "selection" not in config:
            config = {**config, "selection": "scorer"}
        return {key: _keep_old_selection(value) for key, value in config.items()}
    return config


def read_meta(path: str | Path) -> FolderMeta:
    """The ``hybridformer.json`` of a model folder, converted to the current schema.

    Raises:
        FileNotFoundError: no folder or no ``hybridformer.json``.
        ValueError: invalid JSON, not a hybridformer model's config, or a newer format (names the file).
    """
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a hybridformer model folder (no {CONFIG_FILE})")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: invalid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{file}: not a hybridformer model config (expected a JSON object)")
    if meta.get("format") == "hybridformer" and "encoder" in meta:
        old = _from_text_v1(meta, file)
        return FolderMeta(old.architecture, _keep_old_selection(old.config), old.quantization, format_version=1)
    if not isinstance(meta.get("architecture"), str) or not isinstance(meta.get("config"), dict):
        raise ValueError(f"{file}: not a hybridformer model config (needs 'architecture' and 'config')")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{file}: format_version {version!r} is newer than this hybridformer reads ({FORMAT_VERSION})")
    known = {"architecture", "format_version", "config", "quantization"}
    extra = {k: v for k, v in meta.items() if k not in known}
    return FolderMeta(meta["architecture"], _keep_old_selection(meta["config"]), meta.get("quantization"), extra, version)


def read_tensors(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """(every tensor of the folder's weights file, the file's name for messages); never unpickles.

    Raises:
        FileNotFoundError: no weights file; ValueError: not a readable safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file() and (folder / LEGACY_INT8_WEIGHTS).is_file():
        weights = folder / LEGACY_INT8_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: missing {WEIGHTS_FILE}")
    try:
        return load_file(str(weights)), str(weights)
    except SafetensorError as err:
        raise ValueError(f"{weights}: not a readable safetensors file ({err})") from None


def write_folder(path: str | Path, meta: FolderMeta, tensors: dict[str, Tensor]) -> Path:
    """Write ``model.safetensors`` then ``hybridformer.json`` into the folder ``path`` (created if needed).

    Each file goes to a temporary name and is renamed, weights first: a folder with a config always
    has the weights it describes. Other files in the folder are left as they are.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    (folder / LEGACY_INT8_WEIGHTS).unlink(missing_ok=True)  # an older int8 save in the same folder
    write_json(folder / CONFIG_FILE, meta.to_dict())
    return folder


def copy_extras(source: str | Path, target: str | Path) -> list[str]:
    """Copy the files of ``source`` that are not the model's own (tokenizer, generation config, ...) into
    ``target`` unchanged, keeping what ``target`` already has; the names copied."""
    source, target = Path(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for file in sorted(source.iterdir()):
        if file.is_file() and file.name not in _OWN_FILES and not (target / file.name).exists():
            shutil.copy2(file, target / file.name)
            copied.append(file.name)
    return copied
