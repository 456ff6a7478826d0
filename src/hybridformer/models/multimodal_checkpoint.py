"""Building and loading the multimodal model from its folder (:mod:`hybridformer.model_folder`), no pickle.

The folder's ``config`` is the full :class:`MultimodalConfig`; loading rebuilds every part from it and
loads the tensors strictly, so a round trip gives the same parameters and buffers bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hybridformer.config import ConfigError, from_dict, to_dict
from hybridformer.model_folder import read_meta, read_tensors
from hybridformer.models.multimodal_config import MultimodalConfig

if TYPE_CHECKING:
    from hybridformer.models.multimodal import MultimodalModel

__all__ = ["load_multimodal", "build_multimodal", "model_from_state", "read_config", "ARCHITECTURE"]

ARCHITECTURE = "MultimodalModel"


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


def read_config(path: str | Path) -> MultimodalConfig:
    """The :class:`MultimodalConfig` of a saved folder.

    Raises:
        FileNotFoundError: the folder or its config is missing.
        ValueError: the file is not a multimodal model's config (names the file).
    """
    meta = read_meta(path)
    if meta.architecture != ARCHITECTURE:
        raise ValueError(f"{path}: holds a {meta.architecture} model, not a {ARCHITECTURE}")
    try:
        return from_dict(MultimodalConfig, meta.config)
    except ConfigError as err:
        raise ValueError(f"{path}: bad config: {err}") from None


def load_multimodal(path: str | Path) -> MultimodalModel:
    """Rebuild the float model saved in ``path`` and load its weights strictly.

    Raises:
        ValueError: an int8 folder (``hybridformer.registry.load_model`` reads those), or files that do
            not describe the model.
    """
    config = read_config(path)
    if read_meta(path).quantization is not None:
        raise ValueError(f"{path}: an int8 model; load it with hybridformer.registry.load_model")
    state, source = read_tensors(path)
    return model_from_state(config, state, source)


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
