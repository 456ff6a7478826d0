"""Reading text-model folders: Hugging Face BERT/RoBERTa checkpoints and our own format.

Our folders (:mod:`hybridformer.model_folder`, written by ``hybridformer.registry.save_model``) hold
every text model (encoder alone, classifier, masked LM); :func:`read_text_checkpoint` can take the
encoder out of any of them. The encoder's config is the folder's ``config`` for a ``TextEncoder`` and
its ``config["encoder"]`` otherwise; the encoder's weights sit under ``encoder.`` in the latter.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from hybridformer.config import ConfigError, apply_overrides, from_dict
from hybridformer.encoders.hf_bert import config_from_hf, convert_hf_state_dict, hf_encoder_keys
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.model_folder import CONFIG_FILE, FolderMeta, read_meta, read_tensors

__all__ = [
    "TextCheckpoint",
    "checkpoint_of",
    "read_text_checkpoint",
    "base_encoder_keys",
    "resolve_overrides",
    "load_weights",
    "encoder_prefix",
]

logger = logging.getLogger(__name__)

_HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Fields the weights fix: overriding them would not match the stored tensors.
_FIXED_FIELDS = (
    "vocab_size",
    "d_model",
    "n_layers",
    "n_heads",
    "d_ff",
    "position_offset",
    "type_vocab_size",
    "pad_token_id",
    "activation",
    "norm",
    "pooler",
    "attention.d_model",
    "attention.n_heads",
    "attention.bias",
)


@dataclass
class TextCheckpoint:
    """The contents of a text-model folder, split into the encoder and the rest."""

    config: TextEncoderConfig
    """The encoder config the weights were saved with (no overrides applied)."""
    encoder_state: dict[str, Tensor]
    """Encoder weights under our names."""
    others: dict[str, Tensor]
    """Weights outside the encoder: HF names for an HF folder, our names (prefix removed) otherwise."""
    meta: dict[str, Any]
    """Our folder's ``architecture`` and head settings (``config`` less the encoder, e.g. ``num_labels``)
    and ``quantization`` when int8; empty for an HF folder."""
    source: str
    """The folder, for messages."""


def _check_folder(path: Path) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {path}")
    if not (path / CONFIG_FILE).is_file() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a model folder: expected {CONFIG_FILE} (hybridformer) or config.json (Hugging Face)"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err}") from None


def _load_hf_weights(path: Path) -> dict[str, Tensor]:
    """All tensors of an HF folder: safetensors preferred, pickles only with ``weights_only=True``."""
    for name in _HF_WEIGHTS:
        file = path / name
        if not file.is_file():
            continue
        if name.endswith(".index.json"):
            shards = sorted(set(_read_json(file)["weight_map"].values()))
            files = [path / shard for shard in shards]
        else:
            files = [file]
        state: dict[str, Tensor] = {}
        for f in files:
            if f.suffix == ".safetensors":
                state.update(load_file(f))
            else:
                state.update(torch.load(f, map_location="cpu", weights_only=True))
        return state
    raise FileNotFoundError(f"{path}: no weights found; expected one of {', '.join(_HF_WEIGHTS)}")


def checkpoint_of(folder: FolderMeta, state: dict[str, Tensor], source: str) -> TextCheckpoint:
    """Split the tensors of one of our text-model folders into the encoder's and the rest.

    Raises:
        ValueError: the folder holds no text model.
    """
    prefix = encoder_prefix(folder.architecture)
    encoder = folder.config if not prefix else folder.config.get("encoder")
    if not isinstance(encoder, dict):
        raise ValueError(f"{source}: holds a {folder.architecture}, not a text model")
    config = from_dict(TextEncoderConfig, encoder, prefix="encoder.")
    encoder_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    others = {k: v for k, v in state.items() if not k.startswith(prefix)}
    head = {k: v for k, v in folder.config.items() if k != "encoder"} if prefix else {}
    meta = {"architecture": folder.architecture, **head}
    if folder.quantization is not None:
        meta["quantization"] = folder.quantization
    return TextCheckpoint(config, encoder_state, others, meta, source)


def read_text_checkpoint(path: str | Path) -> TextCheckpoint:
    """Read a Hugging Face BERT/RoBERTa folder or a folder saved by a hybridformer text model.

    Raises:
        FileNotFoundError: the folder, its config or its weights are missing.
        ValueError: unsupported model type, or the weights do not match the config.
    """
    path = Path(path)
    _check_folder(path)
    source = str(path)
    if (path / CONFIG_FILE).is_file():
        state, _ = read_tensors(path)
        return checkpoint_of(read_meta(path), state, source)
    hf = _read_json(path / "config.json")
    config = config_from_hf(hf, f"{path / 'config.json'}")
    converted = convert_hf_state_dict(_load_hf_weights(path), config.n_layers, source)
    if not converted.has_pooler:
        config = dataclasses.replace(config, pooler=False)
    return TextCheckpoint(config, converted.encoder, converted.others, {}, source)


def encoder_prefix(architecture: str) -> str:
    """Where a text model's encoder weights sit in its state dict: ``""`` for an encoder alone."""
    return "" if architecture == "TextEncoder" else "encoder."


def _flatten(overrides: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _get(config: TextEncoderConfig, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def resolve_overrides(base: TextEncoderConfig, overrides: dict[str, Any]) -> TextEncoderConfig:
    """Apply ``from_pretrained`` overrides (nested mappings or dotted names) to a checkpoint's config.

    Switching ``attention.kind`` to ``hybrid`` also sets ``attention.dropout`` to 0 unless it is given.

    Raises:
        ConfigError: an unknown field, a bad value, or a field the weights fix.
    """
    if not overrides:
        return base
    flat = _flatten(overrides)
    for name in _FIXED_FIELDS:
        fixed = _get(base, name)
        if name in flat and str(flat[name]).lower() != str(fixed).lower():
            raise ConfigError(f"{name}: fixed by the checkpoint ({fixed!r}); cannot override it to {flat[name]!r}")
    if flat.get("attention.kind") == "hybrid" and "attention.dropout" not in flat:
        # Checkpoints carry BERT's attention-probability dropout, which the hybrid kernel cannot apply
        # (it never materialises the probabilities): switching to hybrid turns it off.
        flat["attention.dropout"] = 0.0
    config = apply_overrides(base, flat)
    for name in _FIXED_FIELDS:
        if _get(config, name) != _get(base, name):
            raise ConfigError(f"{name}: fixed by the checkpoint ({_get(base, name)!r}); cannot override it")
    return config


def load_weights(module: nn.Module, state: dict[str, Tensor], required: set[str], source: str) -> None:
    """Copy ``state`` into ``module``, checking names and shapes.

    A pruned gated FFN resizes itself to the checkpoint's groups while loading (its ``kept_groups``
    buffer), so shapes are checked by ``load_state_dict`` itself, not against the fresh module.

    Args:
        module: the freshly built model.
        state: weights under the module's names.
        required: names that must be in ``state``; the module's other parameters (modules the
            checkpoint predates, such as the attention scorer or the FFN gates) keep their init.
        source: the folder, for messages.

    Raises:
        ValueError: missing required weights, weights the module does not have, or shape mismatches.
    """
    missing = sorted(required - set(state))
    unexpected = sorted(set(state) - set(module.state_dict()))
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not match the model; missing: {missing[:8]}; unexpected: {unexpected[:8]}"
        )
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"{source}: weights do not fit the model: {err}") from None
    if result.missing_keys:
        logger.info("%s: newly initialised (not in the checkpoint): %s", source, ", ".join(result.missing_keys))


def base_encoder_keys(config: TextEncoderConfig) -> set[str]:
    """Weights every encoder of this shape has, whatever its attention or gates (our names)."""
    keys = set(hf_encoder_keys(config.n_layers, config.pooler).values())
    if config.norm == "pre":
        keys |= {"final_norm.weight", "final_norm.bias"}
    return keys
