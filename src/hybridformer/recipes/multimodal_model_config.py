"""The ``model`` section of the multimodal recipes: which model, and pretrained parts to start from.

    --model tiny                                  a new tiny model (or --model runs/mm/model: a saved folder)
    --model.image.weights resnet.safetensors      its image trunk from a torchvision ResNet state dict
    --model.video.weights r3d.pth                 its video trunk from a torchvision video ResNet state dict
    --model.text.weights path/to/bert-folder      its text encoder from a local BERT / RoBERTa folder

``--model X`` is shorthand for ``--model.name X``. Trunk files are ``.safetensors`` or ``.pth``/``.pt``
read with ``weights_only=True`` (never pickle); their classifier (``fc.*``) is ignored and RGB weights
are summed to one channel for a grey trunk. They must match the trunk's architecture (the tiny flavor's
trunks are depth 10 cut after layer3, so a ``resnet18`` file does not fit it: the error names the
missing and mismatched keys). A text folder replaces the text encoder's config and weights (full
attention, gates off, as :meth:`TextEncoder.from_pretrained` reads it); the decoder then reads its
width, shares its vocabulary and takes its tokenizer's [CLS]/[SEP]/[PAD] ids, and the run uses that
folder's tokenizer. Pretrained parts are loaded after the saved folder's weights (they replace that
part), and the saved model records no path: its folder holds the weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hybridformer.config import check

__all__ = ["PretrainedPart", "MMModelConfig", "as_model_config", "with_text_encoder", "load_pretrained_parts", "model_tokenizer"]


@dataclass
class PretrainedPart:
    """A pretrained file or folder to start one part of the model from."""

    weights: str | None = None
    """The file (trunks: torchvision state dict, ``.safetensors`` / ``.pth``) or folder (text: a local
    BERT / RoBERTa checkpoint); None: the part starts from the model (random init or the saved folder)."""

    def __post_init__(self) -> None:
        check(self.weights is None or Path(self.weights).exists(), "weights", f"not found: {self.weights}")


@dataclass
class MMModelConfig:
    """The multimodal model of a run (``--model NAME`` sets ``name``)."""

    SHORTHAND: ClassVar[str] = "name"

    name: str = "tiny"
    """``tiny`` (a new tiny model) or a folder saved by ``save_pretrained`` (e.g. a pretraining run's ``model/``)."""
    image: PretrainedPart = field(default_factory=PretrainedPart)
    """The image trunk's torchvision ResNet state dict (``--model.image.weights``)."""
    video: PretrainedPart = field(default_factory=PretrainedPart)
    """The video trunk's torchvision video ResNet state dict (``--model.video.weights``)."""
    text: PretrainedPart = field(default_factory=PretrainedPart)
    """A local BERT / RoBERTa folder for the text encoder (``--model.text.weights``)."""

    def __post_init__(self) -> None:
        check(bool(self.name), "model.name", "give tiny or a saved model folder")
        check(self.text.weights is None or Path(self.text.weights).is_dir(), "model.text.weights",
              f"must be a BERT / RoBERTa folder (config.json + weights), got {self.text.weights}")


def as_model_config(value: str | MMModelConfig) -> MMModelConfig:
    """``value`` as a model section (a name, as Python callers write ``model="tiny"``, becomes its ``name``)."""
    return MMModelConfig(name=value) if isinstance(value, str) else value


def with_text_encoder(config: Any, folder: str) -> tuple[Any, Any]:
    """(config with the text encoder of ``folder`` and a decoder that reads it, that encoder)."""
    from hybridformer.data import load_tokenizer
    from hybridformer.encoders.text import TextEncoder

    encoder = TextEncoder.from_pretrained(folder)
    tok = load_tokenizer(folder)
    text = encoder.config
    decoder = dataclasses.replace(config.decoder, vocab_size=text.vocab_size, text_dim=text.d_model,
                                  bos_token_id=tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id,
                                  eos_token_id=tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id)
    return dataclasses.replace(config, text=text, decoder=decoder), encoder


def load_pretrained_parts(model: Any, spec: MMModelConfig) -> None:
    """Load ``spec``'s trunk files into ``model``'s image / video encoders (the text encoder is loaded
    by :func:`with_text_encoder` when the model is built)."""
    for part, encoder in (("image", model.image_encoder), ("video", model.video_encoder)):
        path = getattr(spec, part).weights
        if path is None:
            continue
        if encoder is None:
            raise ValueError(f"model.{part}.weights: the model has no {part} encoder to load {path} into")
        encoder.load_torchvision_weights(path)


def model_tokenizer(spec: MMModelConfig) -> Any:
    """The run's tokenizer: the text folder's, else a saved model folder's, else the bundled MiniLM's."""
    from hybridformer.data import load_tokenizer, minilm_tokenizer

    if spec.text.weights is not None:
        return load_tokenizer(spec.text.weights)
    folder = Path(spec.name)
    if folder.is_dir() and any((folder / n).is_file() for n in ("tokenizer.json", "vocab.txt", "vocab.json")):
        return load_tokenizer(folder)
    return minilm_tokenizer()
