"""What ``--model`` names: a model folder or ``tiny``, loaded into the engines it can serve."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridformer.serve.config import ServeConfig
from hybridformer.encoders import TextEncoder
from hybridformer.serve.engine import EncoderEngine, Generator

__all__ = ["ServedModel", "load_served_model", "parse_model_spec", "tiny_generator"]


@dataclass
class ServedModel:
    """One model name of ``/v1/models`` and the engines behind its endpoints."""

    name: str
    classifier: EncoderEngine | None = None
    """Serves /v1/classify."""
    embedder: EncoderEngine | None = None
    """Serves /v1/embeddings."""
    generator: Generator | None = None
    """Serves /v1/chat/completions."""

    def capabilities(self) -> list[str]:
        engines = (("classify", self.classifier), ("embeddings", self.embedder), ("chat", self.generator))
        return [name for name, engine in engines if engine is not None]


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named after the folder) or ``tiny`` -> (name, path)."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name or not path:
            raise ValueError(f"--model: expected NAME=DIR, DIR or tiny, got {spec!r}")
        return name, path
    return ("tiny" if spec == "tiny" else Path(spec).resolve().name), spec


def load_served_model(spec: str, config: ServeConfig) -> ServedModel:
    """Load what ``--model spec`` names; a folder's architecture (:mod:`hybridformer.registry`) decides
    the endpoints.

    - ``tiny``: a randomly initialised tiny generator, chat only (see :func:`tiny_generator`).
    - a multimodal model's folder (float, or its int8 form written by ``hybridformer quantize``): chat.
    - a folder written by ``hybridformer finetune`` or ``distill`` (a ``TextClassifier``), or its int8
      form: classify, and embeddings from its encoder; its tokenizer is read from the folder
      (MiniLM's when it has none).
    - any other text-model folder (ours or Hugging Face BERT/RoBERTa, e.g. the bundled MiniLM):
      embeddings.

    Raises:
        FileNotFoundError / ValueError: the folder is missing or holds no text model.
    """
    from hybridformer.data.tokenizer import resolve_tokenizer
    from hybridformer.registry import architecture_at, load_model

    name, path = parse_model_spec(spec)
    if path == "tiny":
        return ServedModel(name, generator=tiny_generator(resolve_tokenizer(None)))
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"--model: model folder not found: {folder} (or use --model tiny)")
    arch = architecture_at(folder)
    tokenizer = resolve_tokenizer(None, folder)
    if arch.family == "multimodal":
        from hybridformer.serve.multimodal import MultimodalGenerator
        from hybridformer.models.prompt_format import decoder_prompt_format, read_prompt_format

        model = load_model(folder)
        fmt = read_prompt_format(folder, decoder_prompt_format(tokenizer, model.config.decoder))
        return ServedModel(name, generator=MultimodalGenerator(model, tokenizer, fmt))
    if arch.name not in ("TextClassifier", "TextEncoder", "TextForMaskedLM"):
        raise ValueError(f"--model: {folder} holds a {arch.name}, which serve cannot serve")
    normalize = _normalizes(folder, config.normalize_embeddings)
    if arch.name == "TextClassifier":
        classifier = load_model(folder).eval()
        limit = min(config.max_prompt_tokens, classifier.encoder.config.max_positions)
        return ServedModel(
            name,
            classifier=EncoderEngine(classifier, tokenizer, "classify", max_tokens=limit,
                                     label_names=classifier.label_names),
            embedder=EncoderEngine(classifier.encoder, tokenizer, "embed", max_tokens=limit, normalize=normalize),
        )
    encoder = TextEncoder.from_pretrained(folder).eval()  # an encoder alone, or a masked LM's encoder
    limit = min(config.max_prompt_tokens, encoder.config.max_positions)
    return ServedModel(name, embedder=EncoderEngine(encoder, tokenizer, "embed", max_tokens=limit, normalize=normalize))


def tiny_generator(tokenizer: Any, seed: int = 0) -> Generator:
    """The RANDOM tiny model behind ``--model tiny``: the multimodal model's tiny flavor (image encoder,
    joint decoder), seeded, behind :class:`MultimodalGenerator`."""
    import torch

    from hybridformer.registry import load_model
    from hybridformer.serve.multimodal import MultimodalGenerator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = load_model("tiny", video=False)
    return MultimodalGenerator(model, tokenizer)


def _normalizes(folder: Path, default: bool) -> bool:
    """A sentence-transformers folder says whether it normalises (modules.json); else `default`."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return default
    try:
        return any(str(m.get("type", "")).endswith("Normalize") for m in json.loads(modules.read_text()))
    except (ValueError, AttributeError):
        return default
