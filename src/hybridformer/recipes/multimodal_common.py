"""What the multimodal recipes share: the model (``tiny`` or a saved folder, with new heads), the
tokenizer, the data of each task and its collator."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hybridformer.config import check
from hybridformer.data import ImageTextCollator, PixelSpec, VideoTextCollator, VQACollator, minilm_tokenizer
from hybridformer.data.formats import FORMATS
from hybridformer.data.image_text import load_image_text
from hybridformer.data.moving_mnist import DIRECTIONS, moving_mnist_splits
from hybridformer.data.vqa import answer_vocabulary
from hybridformer.data.vqa_generate import vqa_splits
from hybridformer.models.multimodal import MultimodalModel
from hybridformer.models.multimodal_checkpoint import read_config
from hybridformer.models.multimodal_config import HeadsConfig
from hybridformer.models.multimodal_flavors import build_initialised, tiny_config
from hybridformer.recipes.multimodal_model_config import MMModelConfig, load_pretrained_parts, with_text_encoder

__all__ = ["MMDataConfig", "IMAGE_TEXT_SETS", "load_model", "tokenizer", "pixel_spec", "task_data"]

IMAGE_TEXT_SETS = ("mnist5k", "fashion-mnist")
"""Image-text sets of ``data.task`` (templated captions; see docs/data.md)."""
VIDEO_PROMPT = "which way does the digit move?"


@dataclass
class MMDataConfig:
    """The data of a multimodal run."""

    task: str = "mnist5k"
    """The bundled image-text set (``mnist5k`` | ``fashion-mnist``), used when ``path`` is not set; VQA
    questions and moving-digit clips are made from the same images."""
    path: str | None = None
    """The user's data: a folder, a file or a shard pattern (``shards/{000000..000099}.tar``); its
    layout is detected, or named by ``format``. See docs/data.md for each layout."""
    format: str | None = None
    """The layout of ``path``: imagefolder | csv | jsonl | coco | webdataset | vqa-v2 (None: detected)."""
    on_bad_file: Literal["error", "skip"] = "error"
    """A missing, truncated or malformed file in ``path``: ``error`` stops with its name; ``skip`` skips it
    and lists it in the run's summary and metrics.json."""
    caption_column: str | None = None
    """The caption column of a CSV / JSONL / metadata file (None: the first of caption, text, captions,
    title, sentence)."""
    image_dir: str | None = None
    """The image folder of a COCO captions file (None: the split's folder beside it, e.g. ``train2017/``)."""
    image_size: int = 32
    """Side images and clip frames read from ``path`` are resized to (the tiny model's 32)."""
    max_length: int = 24
    """Truncate captions / questions to this many tokens."""
    train_fraction: float = 1.0
    """Use this share of the training split (spread evenly over its fixed order), e.g. 0.1 for few-shot."""
    seed: int = 0
    """The split seed (which images are train / validation / test)."""

    def __post_init__(self) -> None:
        check(self.format is None or self.format in FORMATS, "data.format",
              f"must be one of {', '.join(FORMATS)}, got {self.format!r}")
        check(self.format is None or self.path is not None, "data.format", "names the layout of data.path; set data.path too")
        check(self.image_size >= 8, "data.image_size", f"must be >= 8, got {self.image_size}")
        check(self.task in IMAGE_TEXT_SETS, "data.task", f"must be one of {', '.join(IMAGE_TEXT_SETS)}, got {self.task!r}")
        check(self.max_length >= 4, "data.max_length", f"must be >= 4, got {self.max_length}")
        check(0 < self.train_fraction <= 1, "data.train_fraction", f"must be in (0, 1], got {self.train_fraction}")


def tokenizer() -> Any:
    """The tiny model's WordPiece tokenizer (the bundled MiniLM's)."""
    return minilm_tokenizer()


def load_model(spec: str | MMModelConfig, heads: HeadsConfig | None = None, *, video: bool = False,
               decoder_attention: str | None = None) -> MultimodalModel:
    """``tiny`` (random init under the current seed) or a folder saved by ``save_pretrained``; an
    :class:`MMModelConfig` adds its pretrained parts (trunk files, a BERT / RoBERTa text folder).

    ``heads`` replaces the saved heads (new heads start from their init, every other weight is
    loaded); ``video`` adds a (new) video encoder to a folder saved without one; ``decoder_attention``
    (``hybrid`` | ``full``) changes the decoder's self-attention kind.
    """
    parts = spec if isinstance(spec, MMModelConfig) else MMModelConfig(name=spec)
    spec = parts.name
    if spec == "tiny":
        config = tiny_config(heads, video=video)
        state = None
    else:
        path = Path(spec)
        if not (path / "hybridformer.json").is_file():
            raise ValueError(f"model: expected 'tiny' or a folder saved by save_pretrained (with hybridformer.json), got {spec!r}")
        config = read_config(path)
        if heads is not None:
            config = dataclasses.replace(config, heads=heads)
        if video and config.video is None:
            base = tiny_config(video=True)
            config = dataclasses.replace(config, video=base.video,
                                         decoder=dataclasses.replace(config.decoder, video_dim=base.decoder.video_dim))
        state = MultimodalModel.from_pretrained(path).state_dict()
    if decoder_attention is not None:
        check(decoder_attention in ("hybrid", "full"), "decoder_attention", f"must be hybrid or full, got {decoder_attention!r}")
        attention = dataclasses.replace(config.decoder.attention, kind=decoder_attention)
        config = dataclasses.replace(config, decoder=dataclasses.replace(config.decoder, attention=attention))
    text_encoder = None
    if parts.text.weights is not None:
        config, text_encoder = with_text_encoder(config, parts.text.weights)
    model = build_initialised(config)
    if state is not None:
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in state.items() if k in own and own[k].shape == v.shape}, strict=False)
    if text_encoder is not None:
        model.text_encoder.load_state_dict(text_encoder.state_dict())
    load_pretrained_parts(model, parts)
    return model


def pixel_spec() -> PixelSpec:
    """MNIST-sized grey images as the tiny encoders' 32×32 RGB."""
    return PixelSpec(image_size=32, channels=3)


def _first(dataset: Any, fraction: float) -> Any:
    """``fraction`` of ``dataset``, spread evenly over it (the splits are ordered by class)."""
    if fraction >= 1:
        return dataset
    from torch.utils.data import Subset

    from hybridformer.recipes.multimodal_metrics import spread

    return Subset(dataset, spread(len(dataset), max(1, int(len(dataset) * fraction))))


def task_data(task: str, data: MMDataConfig, tok: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(train, test, collate, extra) for ``task``: pretrain | caption | image-classification | vqa |
    video-classification. ``extra`` holds the task's answer vocabulary / class names, and for the
    user's files (``data.path``) the :class:`~hybridformer.data.bad_files.BadFiles` log (``bad_files``)."""
    if data.path is not None:
        from hybridformer.recipes.multimodal_user_data import user_task_data

        return user_task_data(task, data, tok)
    spec = pixel_spec()
    if task in ("pretrain", "caption", "image-classification"):
        splits = load_image_text(data.task, data.seed)
        collate = ImageTextCollator(tok, max_length=data.max_length, pixels=spec)
        return _first(splits.train, data.train_fraction), splits.test, collate, {"label_names": splits.train.label_names}
    if task == "vqa":
        splits = vqa_splits(data.task, data.seed)
        answers = answer_vocabulary(splits.train)
        collate = VQACollator(tok, answers, max_length=data.max_length, pixels=spec)
        return _first(splits.train, data.train_fraction), splits.test, collate, {"answers": answers}
    if task == "video-classification":
        splits = moving_mnist_splits(num_frames=8, canvas=32, seed=data.seed)
        collate = VideoTextCollator(tok, max_length=data.max_length, pixels=spec)
        prompt = tok(VIDEO_PROMPT)["input_ids"]
        return _first(splits.train, data.train_fraction), splits.test, collate, {"label_names": DIRECTIONS, "prompt_ids": prompt}
    raise ValueError(f"task: unknown task {task!r}; choose from pretrain, caption, image-classification, vqa, video-classification")
