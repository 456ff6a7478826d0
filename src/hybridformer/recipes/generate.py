"""The job behind ``hybridformer generate``: load a model (or build the random tiny one), read the
image / video with the data pipeline's limits, and generate text for the prompt, built and decoded
as the model folder says (:mod:`hybridformer.models.prompt_format`: its chat template and
``generation_config.json``; an image with no prompt asks for a caption)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hybridformer.models.generate import GenerationConfig
from hybridformer.models.prompt_format import PromptFormat, decoder_prompt_format, read_prompt_format

__all__ = ["GenerateRequest", "GenerateResult", "load_generator", "generate_text", "generation_defaults"]

TINY = "tiny"
DEFAULT_MAX_NEW_TOKENS = 20
"""Most generated tokens when neither the request nor the folder's generation config says."""


@dataclass
class GenerateRequest:
    """What to generate from."""

    model: str = TINY
    """`tiny` (randomly initialised, for trying the pipeline) or a folder written by
    ``MultimodalModel.save_pretrained``."""
    image: Path | None = None
    """An image file (any format Pillow reads), resized to the model's image size."""
    video: Path | None = None
    """A clip: a .npy array, a folder of frames or a video file (needs PyAV)."""
    prompt: str = ""
    """The user's text (e.g. a question), put into the model's chat template; empty asks for a caption."""
    seed: int = 0
    """Seed of the tiny model's initialisation (and of sampling when generation.seed is None)."""
    generation: dict[str, Any] = field(default_factory=dict)
    """:class:`GenerationConfig` fields overriding the model's defaults (:func:`generation_defaults`)."""


@dataclass
class GenerateResult:
    """The generated text and what produced it."""

    text: str
    """The generated continuation, special tokens removed."""
    tokens: list[int]
    """Its token ids (EOS included when generation stopped on it)."""
    random_model: bool
    """True for the randomly initialised tiny model (the text is meaningless)."""


def load_generator(ref: str, seed: int = 0) -> tuple[Any, Any, PromptFormat, bool]:
    """(model in eval mode, tokenizer, prompt format, is_random) for ``tiny`` or a saved folder.

    Raises:
        FileNotFoundError / ValueError: the folder is not a saved multimodal model (names it).
    """
    from hybridformer.data.tokenizer import resolve_tokenizer
    from hybridformer.registry import FLAVORS, architecture_at, load_model

    if ref in FLAVORS:
        torch.manual_seed(seed)
    elif not Path(ref).is_dir():
        raise FileNotFoundError(f"--model: {ref} is neither 'tiny' nor a model folder (flavors: {', '.join(FLAVORS)})")
    if architecture_at(ref).family != "multimodal":
        raise ValueError(f"--model: {ref} holds a {architecture_at(ref).name}; generate needs a multimodal model")
    model = load_model(ref).eval()
    random = ref in FLAVORS
    tokenizer = resolve_tokenizer(None, None if random else ref)
    default = decoder_prompt_format(tokenizer, model.config.decoder)
    return model, tokenizer, default if random else read_prompt_format(ref, default), random


def generation_defaults(fmt: PromptFormat) -> dict[str, Any]:
    """The :class:`GenerationConfig` fields a model folder's generation config sets (greedy unless it samples)."""
    defaults: dict[str, Any] = {"strategy": "sample" if fmt.do_sample else "greedy",
                                "max_new_tokens": fmt.max_new_tokens or DEFAULT_MAX_NEW_TOKENS}
    if fmt.do_sample:
        defaults.update(temperature=fmt.temperature, top_p=fmt.top_p)
    return defaults


def _pixels(request: GenerateRequest, model: Any) -> dict[str, torch.Tensor]:
    """The context tensors of the request: read with the data pipeline's limits, then converted as its
    collators convert training examples (``stack_pixels``: pixels / 255, resized to the model's size)."""
    from hybridformer.data.images import load_image, load_video
    from hybridformer.data.multimodal_collate import PixelSpec, stack_pixels

    cfg = model.config
    context: dict[str, torch.Tensor] = {}
    if request.image is not None:
        if cfg.image is None:
            raise ValueError(f"--image: model {request.model} has no image encoder")
        spec = PixelSpec(image_size=cfg.image.image_size, channels=cfg.image.in_channels)
        context["images"] = stack_pixels([load_image(request.image, channels=spec.channels)], spec)  # (1, C, H, W)
    if request.video is not None:
        if cfg.video is None:
            raise ValueError(f"--video: model {request.model} has no video encoder")
        spec = PixelSpec(image_size=cfg.video.frame_size, channels=cfg.video.in_channels)
        clip = load_video(request.video, min_frames=cfg.video.num_frames, max_frames=cfg.video.num_frames,
                          channels=spec.channels)
        context["videos"] = stack_pixels([clip], spec, what="clips")  # (1, C, T, H, W)
    return context


def generate_text(request: GenerateRequest) -> GenerateResult:
    """Generate the answer to ``request.prompt`` (in the model's chat template) given its image / video.

    Raises:
        ValueError: unreadable or oversized image/video, a modality the model lacks, a prompt too long
            for the model (the message names the flag or file).
        ConfigError: a bad generation setting (names the field).
    """
    model, tokenizer, fmt, random_model = load_generator(request.model, request.seed)
    generation = GenerationConfig(**{**generation_defaults(fmt), **request.generation})
    if generation.strategy == "sample" and generation.seed is None:
        generation = GenerationConfig(**{**vars(generation), "seed": request.seed})
    context = _pixels(request, model)
    dec = model.config.decoder
    ids = fmt.prompt_ids(tokenizer, [{"role": "user", "content": request.prompt}])
    budget = dec.max_positions - generation.max_new_tokens
    if len(ids) > budget:
        raise ValueError(
            f"--prompt: {len(ids)} tokens is too long; the model takes at most {budget} with "
            f"--max-new-tokens {generation.max_new_tokens} (max_positions={dec.max_positions})"
        )
    out = model.generate(torch.tensor([ids]), config=generation, **context)
    tokens = out.sequences[0, : int(out.lengths[0])].tolist()
    return GenerateResult(tokenizer.decode(tokens, skip_special_tokens=True), tokens, random_model)
