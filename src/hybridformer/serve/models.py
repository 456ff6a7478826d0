"""What ``--model`` names: a model folder or ``tiny``, loaded into the engines it can serve."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridformer.serve.config import ServeConfig
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
    """Load what ``--model spec`` names.

    - ``tiny``: a randomly initialised tiny generator, chat only (see :func:`tiny_generator`).
    - a multimodal model's folder (``MultimodalModel.save_pretrained``, or its int8 form written by
      ``hybridformer quantize``): chat.
    - a folder written by ``hybridformer finetune`` or ``distill`` (a ``TextClassifier``), or its int8
      form: classify, and embeddings from its encoder; its tokenizer is read from the folder
      (MiniLM's when it has none).
    - any other text-model folder (ours or Hugging Face BERT/RoBERTa, e.g. the bundled MiniLM):
      embeddings.

    Raises:
        FileNotFoundError / ValueError: the folder is missing or holds no text model.
    """
    from hybridformer.data import minilm_tokenizer

    name, path = parse_model_spec(spec)
    if path == "tiny":
        return ServedModel(name, generator=tiny_generator(minilm_tokenizer()))

    from hybridformer.encoders import TextEncoder
    from hybridformer.encoders.text_checkpoint import read_text_checkpoint
    from hybridformer.models import TextClassifier
    from hybridformer.recipes.model import resolve_tokenizer

    from hybridformer.compression.int8_format import is_quantized_folder
    from hybridformer.compression.int8_multimodal import is_multimodal_folder

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"--model: model folder not found: {folder} (or use --model tiny)")
    tokenizer = resolve_tokenizer(None, folder)
    if is_multimodal_folder(folder):
        from hybridformer.serve.multimodal import MultimodalGenerator
        from hybridformer.models import MultimodalModel
        from hybridformer.models.prompt_format import decoder_prompt_format, read_prompt_format

        model = MultimodalModel.from_pretrained(folder)
        fmt = read_prompt_format(folder, decoder_prompt_format(tokenizer, model.config.decoder))
        return ServedModel(name, generator=MultimodalGenerator(model, tokenizer, fmt))
    normalize = _normalizes(folder, config.normalize_embeddings)
    int8 = is_quantized_folder(folder)  # an int8 classifier: loaded by TextClassifier.from_pretrained
    checkpoint = None if int8 else read_text_checkpoint(folder)
    if int8 or checkpoint.meta.get("architecture") == "TextClassifier":
        classifier = (TextClassifier.from_pretrained(folder) if int8 else TextClassifier.from_checkpoint(checkpoint)).eval()
        limit = min(config.max_prompt_tokens, classifier.encoder.config.max_positions)
        return ServedModel(
            name,
            classifier=EncoderEngine(classifier, tokenizer, "classify", max_tokens=limit,
                                     label_names=classifier.label_names),
            embedder=EncoderEngine(classifier.encoder, tokenizer, "embed", max_tokens=limit, normalize=normalize),
        )
    encoder = TextEncoder.from_checkpoint(checkpoint).eval()
    limit = min(config.max_prompt_tokens, encoder.config.max_positions)
    return ServedModel(name, embedder=EncoderEngine(encoder, tokenizer, "embed", max_tokens=limit, normalize=normalize))


def tiny_generator(tokenizer: Any, seed: int = 0) -> Generator:
    """The RANDOM tiny model behind ``--model tiny``: the multimodal model's tiny flavor (image encoder,
    joint decoder), seeded, behind :class:`MultimodalGenerator`."""
    import torch

    from hybridformer.serve.multimodal import MultimodalGenerator
    from hybridformer.models import multimodal_tiny

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = multimodal_tiny(video=False)
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
