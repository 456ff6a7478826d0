"""The job behind ``hybridformer generate``: load a model (or build the random tiny one), read the
image / video with the data pipeline's limits, and generate text for the prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hybridformer.models.generate import GenerationConfig

__all__ = ["GenerateRequest", "GenerateResult", "load_generator", "generate_text"]

TINY = "tiny"


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
    """Text the answer continues (e.g. a question); may be empty (captioning)."""
    seed: int = 0
    """Seed of the tiny model's initialisation (and of sampling when generation.seed is None)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Decoding strategy and limits."""


@dataclass
class GenerateResult:
    """The generated text and what produced it."""

    text: str
    """The generated continuation, special tokens removed."""
    tokens: list[int]
    """Its token ids (EOS included when generation stopped on it)."""
    random_model: bool
    """True for the randomly initialised tiny model (the text is meaningless)."""


def load_generator(ref: str, seed: int = 0) -> tuple[Any, Any, bool]:
    """(model in eval mode, tokenizer, is_random) for ``tiny`` or a saved folder.

    Raises:
        FileNotFoundError / ValueError: the folder is not a saved multimodal model (names it).
    """
    from hybridformer.data.tokenizer import load_tokenizer, minilm_tokenizer
    from hybridformer.models import MultimodalModel, multimodal_tiny

    if ref == TINY:
        torch.manual_seed(seed)
        return multimodal_tiny().eval(), minilm_tokenizer(), True
    folder = Path(ref)
    if not folder.is_dir():
        raise FileNotFoundError(f"--model: {ref} is neither 'tiny' nor a model folder")
    model = MultimodalModel.from_pretrained(folder).eval()
    tokenizer = load_tokenizer(folder) if (folder / "tokenizer.json").is_file() else minilm_tokenizer()
    return model, tokenizer, False


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
    """Generate the continuation of ``request.prompt`` given its image / video.

    Raises:
        ValueError: unreadable or oversized image/video, a modality the model lacks, a prompt too long
            for the model (the message names the flag or file).
    """
    model, tokenizer, random_model = load_generator(request.model, request.seed)
    context = _pixels(request, model)
    dec = model.config.decoder
    ids = tokenizer(request.prompt, add_special_tokens=False, verbose=False)["input_ids"]
    budget = dec.max_positions - request.generation.max_new_tokens - 1
    if len(ids) > budget:
        raise ValueError(
            f"--prompt: {len(ids)} tokens is too long; the model takes at most {budget} with "
            f"--max-new-tokens {request.generation.max_new_tokens} (max_positions={dec.max_positions})"
        )
    prompt = torch.tensor([[dec.bos_token_id, *ids]])
    generation = request.generation
    if generation.strategy == "sample" and generation.seed is None:
        generation = GenerationConfig(**{**vars(generation), "seed": request.seed})
    out = model.generate(prompt, config=generation, **context)
    tokens = out.sequences[0, : int(out.lengths[0])].tolist()
    return GenerateResult(tokenizer.decode(tokens, skip_special_tokens=True), tokens, random_model)
