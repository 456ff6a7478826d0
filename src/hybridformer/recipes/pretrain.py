"""Self-supervised pretraining of a text encoder (masked language modelling), from a checkpoint or scratch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from hybridformer.attention import AttentionConfig
from hybridformer.config import ConfigError, apply_overrides, check, save_config, to_dict
from hybridformer.data import LengthBucketBatchSampler, MLMCollator, token_lengths
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.io import write_json
from hybridformer.losses import MLMObjective
from hybridformer.models import TextForMaskedLM
from hybridformer.recipes.corpus import CorpusConfig, load_corpus
from hybridformer.data.tokenizer import resolve_tokenizer
from hybridformer.recipes.model import EncoderSource
from hybridformer.recipes.summary import announce, model_line, training_line
from hybridformer.training import Trainer, TrainConfig, TrainResult, seed_everything, use_deterministic
from hybridformer.registry import save_model

__all__ = ["OBJECTIVES", "PretrainConfig", "PretrainModelConfig", "PretrainResult", "pretrain"]

OBJECTIVES = ("mlm",)
"""Objectives text pretraining supports: ``mlm`` (BERT's masked language modelling)."""
MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "pretrain_config.yaml"


def _small_encoder() -> TextEncoderConfig:
    return TextEncoderConfig(
        d_model=256, n_layers=4, n_heads=4, d_ff=1024, max_positions=512,
        attention=AttentionConfig(kind="hybrid", window=64, global_k=32),
    )


def _default_train() -> TrainConfig:
    # Checkpoints only serve resuming: keep the last one while training, none once the model is saved.
    return TrainConfig(lr=1e-4, epochs=1.0, batch_size=16, out_dir="runs/pretrain", keep_last=1,
                       keep_checkpoints=False)


@dataclass
class PretrainModelConfig(EncoderSource):
    """The encoder to pretrain: a checkpoint to continue, or a new one of shape ``scratch``; the
    ``attention``/``sparsity``/``max_positions`` changes apply to either
    (``--model.attention.window 64``, the same spelling as in fine-tuning)."""

    init_from: str | None = None
    """Checkpoint folder to continue from (Hugging Face BERT/RoBERTa or hybridformer); None: a new
    encoder of shape ``scratch``."""
    scratch: TextEncoderConfig = field(default_factory=_small_encoder)
    """Without ``init_from``: the new encoder's shape (``vocab_size`` and ``pad_token_id`` are taken
    from the tokenizer)."""


@dataclass
class PretrainConfig:
    """A pretraining run. Outputs go to ``train.out_dir`` (logs, checkpoints, ``model/``, ``metrics.json``)."""

    objectives: list[str] = field(default_factory=lambda: ["mlm"])
    """Self-supervised objectives to train with; text pretraining supports ``mlm``."""
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    """The encoder: checkpoint or new shape, tokenizer, attention and FFN-gate changes."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """The training texts."""
    max_length: int = 128
    """Truncate each document to this many tokens."""
    mlm_probability: float = 0.15
    """Share of the real, non-special tokens chosen as MLM targets (80/10/10 corrupted)."""
    train: TrainConfig = field(default_factory=_default_train)
    """Optimisation; ``train.out_dir`` is the run folder."""

    def __post_init__(self) -> None:
        for name in self.objectives:
            check(
                name in OBJECTIVES,
                "objectives",
                f"unknown objective {name!r}; text pretraining supports: {', '.join(OBJECTIVES)}",
            )
        check(len(self.objectives) >= 1, "objectives", f"name at least one of: {', '.join(OBJECTIVES)}")
        check(self.max_length >= 2, "max_length", f"must be >= 2, got {self.max_length}")
        check(
            0.0 < self.mlm_probability < 1.0, "mlm_probability", f"must be in (0, 1), got {self.mlm_probability}"
        )

    @property
    def out_dir(self) -> Path:
        """The run folder."""
        return Path(self.train.out_dir)


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns."""

    model_dir: Path
    """The saved encoder + MLM head (``TextForMaskedLM.from_pretrained``; ``TextEncoder.from_pretrained``
    takes its encoder) with its tokenizer."""
    metrics_path: Path
    """``metrics.json``: the training figures and the config."""
    train: TrainResult
    """The trainer's result."""
    n_documents: int
    """Documents trained on."""
    checkpoints: str = ""
    """What became of the training checkpoints (deleted, or kept and where)."""


def _build(config: PretrainModelConfig, vocab_size: int, pad_token_id: int) -> TextForMaskedLM:
    try:
        if config.init_from is not None:
            return TextForMaskedLM.from_pretrained(config.init_from, **config.encoder_overrides())
        shape = dataclasses.replace(config.scratch, vocab_size=vocab_size, pad_token_id=pad_token_id)
        shape = apply_overrides(shape, config.encoder_overrides())
    except ConfigError as err:
        raise ConfigError(f"model.{err}") from None
    return TextForMaskedLM(TextEncoder(shape))


def pretrain(config: PretrainConfig) -> PretrainResult:
    """Pretrain with MLM on the corpus and save the model and tokenizer to ``<train.out_dir>/model``.

    Raises:
        ConfigError: a bad override or a tokenizer whose vocabulary does not fit the checkpoint.
        ValueError / FileNotFoundError: bad or missing corpus, checkpoint or tokenizer.
    """
    texts = load_corpus(config.corpus)
    tokenizer = resolve_tokenizer(config.model.tokenizer, config.model.init_from)
    if tokenizer.pad_token_id is None:
        raise ValueError("model.tokenizer: has no padding token; MLM batches need one")
    if config.train.deterministic:
        use_deterministic(True)
    seed_everything(config.train.seed)  # a new encoder (or new scorer/gates) is drawn from the run's seed
    model = _build(config.model, len(tokenizer), tokenizer.pad_token_id)
    vocab = model.encoder.config.vocab_size
    if len(tokenizer) > vocab:
        raise ConfigError(f"model.tokenizer: has {len(tokenizer)} tokens but the model's vocabulary has {vocab}")
    collate = MLMCollator(tokenizer, max_length=config.max_length, mlm_probability=config.mlm_probability)
    sampler = LengthBucketBatchSampler(
        token_lengths(texts, tokenizer, config.max_length),
        config.train.batch_size,
        drop_last=config.train.drop_last,
        seed=config.train.seed,
    )
    trainer = Trainer(model, MLMObjective(), texts, config.train, collate, batch_sampler=sampler)
    source = config.model.init_from or "a new encoder (model.scratch)"
    announce([
        f"pretraining with {'+'.join(config.objectives)} on {len(texts)} documents ({config.corpus.source}), "
        f"truncated to {config.max_length} tokens",
        model_line(model, source),
        training_line(trainer),
        f"outputs: {config.out_dir} (model/, metrics.json, log.jsonl, checkpoints/ while training)",
    ])
    result = trainer.fit()

    out = config.out_dir
    model_dir = out / MODEL_DIR
    save_model(model, model_dir, tokenizer=tokenizer)
    checkpoints = trainer.discard_checkpoints()
    announce([checkpoints])
    save_config(config, out / CONFIG_FILE)
    losses = result.losses
    record = {
        "objectives": config.objectives,
        "documents": len(texts),
        "steps": result.final_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "tokens_per_s": result.tokens_per_s,
        "seconds": result.train_seconds,
        "peak_memory_mb": result.peak_memory_mb,
        "model_dir": str(model_dir),
        "config": to_dict(config),
    }
    metrics_path = write_json(out / METRICS_FILE, record)
    return PretrainResult(model_dir=model_dir, metrics_path=metrics_path, train=result, n_documents=len(texts),
                          checkpoints=checkpoints)
