"""Saving and loading the multimodal model: ``hybridformer.json`` + ``model.safetensors``, no pickle.

The JSON holds the architecture name, the format version and the full :class:`MultimodalConfig`;
loading rebuilds every part from it and loads the tensors strictly, so a round trip gives the same
parameters and buffers bit for bit. A tokenizer given to ``save_pretrained`` is saved beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hybridformer.config import ConfigError, from_dict, to_dict
from hybridformer.io import atomic_write, write_json
from hybridformer.models.multimodal_config import MultimodalConfig

if TYPE_CHECKING:
    from hybridformer.models.multimodal import MultimodalModel

__all__ = ["save_multimodal", "load_multimodal", "build_multimodal", "model_from_state", "read_config",
           "read_weights", "CONFIG_FILE", "WEIGHTS_FILE"]

CONFIG_FILE = "hybridformer.json"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE = "MultimodalModel"
FORMAT_VERSION = 1


def build_multimodal(config: MultimodalConfig) -> MultimodalModel:
    """Build every part of a model from its config (parameters as their constructors leave them)."""
    from hybridformer.encoders.image import ImageEncoder
    from hybridformer.encoders.text import TextEncoder
    from hybridformer.encoders.video import VideoEncoder
    from hybridformer.fusion import JointDecoder
    from hybridformer.models.multimodal import MultimodalModel

    # Built in init_weights' order (text, image, video, decoder), so an eager build draws the same numbers.
    text = TextEncoder(config.text)
    image = ImageEncoder(config.image) if config.image is not None else None
    video = VideoEncoder(config.video) if config.video is not None else None
    return MultimodalModel(text, JointDecoder(config.decoder), image_encoder=image, video_encoder=video,
                           heads=config.heads)


def save_multimodal(model: MultimodalModel, path: str | Path, tokenizer: Any = None) -> Path:
    """Write the model (and optionally a Hugging Face tokenizer) into the folder ``path``."""
    from safetensors.torch import save_file

    folder = Path(path)
    meta = {"architecture": ARCHITECTURE, "format_version": FORMAT_VERSION, "config": to_dict(model.config)}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    # Weights first, config last: a folder with a config always has the weights it describes.
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    write_json(folder / CONFIG_FILE, meta)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder


def read_config(path: str | Path) -> MultimodalConfig:
    """The :class:`MultimodalConfig` of a saved folder.

    Raises:
        FileNotFoundError: the folder or its config is missing.
        ValueError: the file is not a multimodal model's config (names the file).
    """
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a saved multimodal model (no {CONFIG_FILE})")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: invalid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("architecture") != ARCHITECTURE:
        got = meta.get("architecture") if isinstance(meta, dict) else None
        raise ValueError(f"{file}: holds a {got or 'unknown'} model, not a {ARCHITECTURE}")
    try:
        return from_dict(MultimodalConfig, meta["config"])
    except (ConfigError, KeyError) as err:
        raise ValueError(f"{file}: bad config: {err}") from None


def load_multimodal(path: str | Path) -> MultimodalModel:
    """Rebuild the model saved in ``path`` and load its weights strictly (see :func:`save_multimodal`).

    A folder written by ``hybridformer.compression.save_quantized`` loads as that int8 model."""
    config = read_config(path)
    if "quantization" in json.loads((Path(path) / CONFIG_FILE).read_text()):
        from hybridformer.compression.int8_multimodal import load_quantized_multimodal  # deploy builds on models

        return load_quantized_multimodal(path)
    weights = Path(path) / WEIGHTS_FILE
    return model_from_state(config, read_weights(weights), str(weights))


def read_weights(weights: Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved weights file.

    Raises:
        FileNotFoundError: no such file; ValueError: not a readable safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not weights.is_file():
        raise FileNotFoundError(f"{weights.parent}: no {weights.name}")
    try:
        return load_file(str(weights))
    except SafetensorError as err:
        raise ValueError(f"{weights}: not a readable safetensors file ({err})") from None


def model_from_state(config: MultimodalConfig, state: dict[str, torch.Tensor], source: str) -> MultimodalModel:
    """The model of ``config`` with the tensors of ``state`` as its parameters and buffers (strict).

    Raises:
        ValueError: ``state`` does not match ``config`` (names ``source``).
    """
    weights = source
    # Built without values (the meta device), then the saved tensors become the parameters.
    with torch.device("meta"):
        model = build_multimodal(config)
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise ValueError(f"{weights}: does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:  # mis-shaped tensors
        raise ValueError(f"{weights}: does not match its config: {str(err).splitlines()[-1].strip()}") from None
    left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise ValueError(f"{weights}: holds no values for {left[:3]}")
    return model
