"""Configuration of the multimodal model: its encoders, the joint decoder and the heads."""

from __future__ import annotations

from dataclasses import dataclass, field

from hybridformer.config import check
from hybridformer.encoders.image import ImageEncoderConfig
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.encoders.video import VideoEncoderConfig
from hybridformer.fusion import DecoderConfig

__all__ = ["HeadsConfig", "MultimodalConfig"]


@dataclass
class HeadsConfig:
    """Task heads on the encoders and the decoder."""

    num_text_labels: int = 0
    """Classes of the text sequence-classification head on the text encoder; 0 = no such head."""
    num_image_labels: int = 0
    """Classes of the image-classification head on the pooled image tokens; 0 = no such head."""
    num_answers: int = 0
    """Size of the VQA answer vocabulary the answer classifier scores; 0 = no answer classifier
    (answers can still be generated)."""
    answers: list[str] = field(default_factory=list)
    """Optional answer strings in index order (saved with the model); empty or num_answers long."""
    embed_dim: int = 256
    """Width of the image and text embeddings of contrastive learning (ITC)."""
    dropout: float = 0.1
    """Dropout inside the classification heads (training only)."""

    def __post_init__(self) -> None:
        for name in ("num_text_labels", "num_image_labels", "num_answers"):
            value = getattr(self, name)
            check(value == 0 or value >= 2, name, f"must be 0 (no head) or >= 2 classes, got {value}")
        check(not self.answers or len(self.answers) == self.num_answers, "answers",
              f"must be empty or hold num_answers={self.num_answers} strings, got {len(self.answers)}")
        check(self.embed_dim >= 1, "embed_dim", f"must be >= 1, got {self.embed_dim}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass
class MultimodalConfig:
    """Everything needed to rebuild a :class:`~hybridformer.models.MultimodalModel` (saved as JSON)."""

    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    """The text encoder (its vocabulary is the decoder's)."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The joint decoder; its text_dim / image_dim / video_dim must be those of the encoders it reads."""
    image: ImageEncoderConfig | None = None
    """The image encoder; None = a model without images."""
    video: VideoEncoderConfig | None = None
    """The video encoder; None = a model without video."""
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    """The task heads."""

    def __post_init__(self) -> None:
        dec = self.decoder
        check(dec.vocab_size == self.text.vocab_size, "decoder.vocab_size",
              f"must equal the text encoder's vocab_size={self.text.vocab_size} (one tokenizer), got {dec.vocab_size}")
        check(dec.text_dim in (0, self.text.d_model), "decoder.text_dim",
              f"must be 0 or the text encoder's d_model={self.text.d_model}, got {dec.text_dim}")
        for name, encoder in (("image", self.image), ("video", self.video)):
            width = getattr(dec, f"{name}_dim")
            allowed = (0,) if encoder is None else (0, encoder.d_model)
            check(width in allowed, f"decoder.{name}_dim",
                  f"must be in {allowed} (0, or the {name} encoder's d_model), got {width}")
