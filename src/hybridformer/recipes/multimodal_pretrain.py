"""Multimodal pretraining of the tiny model (or a saved one) on image-text pairs with any of
``mlm`` (fused MLM), ``itc`` (contrastive), ``itm`` (matching, hard negatives), ``caption``.

    hybridformer pretrain --objectives mlm,itc,itm,caption --model tiny --data.task mnist5k --out-dir runs/mm
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hybridformer.config import check, save_config, to_dict
from hybridformer.io import write_json
from hybridformer.losses import (CaptionObjective, ContrastiveObjective, FusedMLMObjective, MatchingObjective,
                                 MomentumConfig, MomentumTeacher, MultiTaskObjective)
from hybridformer.models.prompt_format import save_decoder_prompt_format
from hybridformer.recipes.multimodal_common import MMDataConfig, load_model, task_data
from hybridformer.recipes.multimodal_model_config import MMModelConfig, as_model_config, model_tokenizer
from hybridformer.recipes.multimodal_user_data import make_trainer
from hybridformer.recipes.summary import announce, model_line, training_line
from hybridformer.training import TrainConfig, TrainResult
from hybridformer.registry import save_model

__all__ = ["MM_OBJECTIVES", "MMPretrainConfig", "MMPretrainResult", "build_pretrain_objective", "mm_pretrain"]

MM_OBJECTIVES = ("mlm", "itc", "itm", "caption")
"""Multimodal pretraining objectives."""


def _default_train() -> TrainConfig:
    return TrainConfig(lr=3e-4, max_steps=100, batch_size=32, out_dir="runs/mm-pretrain", log_every=5,
                       keep_checkpoints=False)


@dataclass
class MMPretrainConfig:
    """A multimodal pretraining run; outputs go to ``train.out_dir`` (logs, checkpoints, ``model/``, ``metrics.json``)."""

    objectives: list[str] = field(default_factory=lambda: ["mlm", "itc", "itm", "caption"])
    """Objectives, summed with ``weights``: mlm, itc, itm, caption."""
    model: MMModelConfig = field(default_factory=MMModelConfig)
    """``--model tiny`` (a new tiny model) or a folder saved by a previous run to continue from; pretrained
    parts with ``--model.image.weights`` / ``--model.video.weights`` / ``--model.text.weights``."""
    weights: dict[str, float] = field(default_factory=dict)
    """Per-objective weights (default 1 each)."""
    momentum: MomentumConfig = field(default_factory=MomentumConfig)
    """ALBEF's momentum distillation (``--momentum.enabled true``; off by default): an EMA teacher's soft
    ITC / captioning / MLM targets mixed in with ``momentum.alpha``."""
    decoder_attention: str | None = None
    """``hybrid`` | ``full``: the decoder's self-attention kind (None keeps the model's)."""
    data: MMDataConfig = field(default_factory=MMDataConfig)
    """The image-text pairs: a bundled set (``data.task``) or the user's files (``data.path``)."""
    train: TrainConfig = field(default_factory=_default_train)
    """Optimisation; ``train.out_dir`` is the run folder."""

    def __post_init__(self) -> None:
        self.model = as_model_config(self.model)
        check(bool(self.objectives), "objectives", f"name at least one of: {', '.join(MM_OBJECTIVES)}")
        for name in self.objectives:
            check(name in MM_OBJECTIVES, "objectives", f"unknown objective {name!r}; choose from {', '.join(MM_OBJECTIVES)}")
        for name in self.weights:
            check(name in self.objectives, f"weights.{name}", f"is not one of the objectives {self.objectives}")


@dataclass
class MMPretrainResult:
    """What :func:`mm_pretrain` returns."""

    model_dir: Path
    """The saved model (``hybridformer.registry.load_model``) with its tokenizer."""
    metrics_path: Path
    """``metrics.json``: steps, losses, examples/s, the config."""
    train: TrainResult
    """The trainer's result."""
    examples_per_s: float
    """Training examples per second."""
    bad_files: dict[str, Any] | None = None
    """The user's files skipped as bad (``BadFiles.summary()``), None for a bundled set."""


def build_pretrain_objective(names: list[str], tok: Any, weights: dict[str, float] | None = None,
                             momentum: MomentumConfig | None = None, model: Any = None) -> MultiTaskObjective:
    """The weighted :class:`MultiTaskObjective` of ``names`` (ITC before ITM, so ITM mines its negatives
    from ITC's similarities); with ``momentum.enabled``, distilled from an EMA copy of ``model``."""
    weights = weights or {}
    make = {
        "itc": ContrastiveObjective,
        "itm": MatchingObjective,
        "caption": CaptionObjective,
        "mlm": lambda: FusedMLMObjective(tok.mask_token_id, len(tok), tok.all_special_ids),
    }
    ordered = [n for n in ("itc", "itm", "caption", "mlm") if n in names]
    teacher = None
    if momentum is not None and momentum.enabled:
        if model is None:
            raise ValueError("momentum: momentum distillation needs the model (its EMA copy is the teacher)")
        teacher = MomentumTeacher(model, momentum)
    return MultiTaskObjective({n: (make[n](), weights.get(n, 1.0)) for n in ordered}, momentum=teacher)


def mm_pretrain(config: MMPretrainConfig) -> MMPretrainResult:
    """Pretrain and save to ``<train.out_dir>/model``."""
    tok = model_tokenizer(config.model)
    train, _, collate, extra = task_data("pretrain", config.data, tok)  # first: a bad file stops before the model is built
    torch.manual_seed(config.train.seed)
    model = load_model(config.model, decoder_attention=config.decoder_attention)
    objective = build_pretrain_objective(config.objectives, tok, config.weights, config.momentum, model)
    trainer = make_trainer(model, objective, train, config.train, collate)
    out = Path(config.train.out_dir)
    model_dir = out / "model"
    announce([
        f"pretraining with {'+'.join(config.objectives)} on {len(train):,} {config.data.path or config.data.task} image-text pairs",
        model_line(model, config.model.name), training_line(trainer),
        f"then: the model (with its prompt format) to {model_dir}, metrics.json",
    ])
    result = trainer.fit()
    save_model(model, model_dir, tokenizer=tok)
    save_decoder_prompt_format(model_dir, tok, model.config.decoder)  # the decoder read "[CLS] caption"
    trainer.discard_checkpoints()  # unless train.keep_checkpoints: they only serve to resume this run
    save_config(config, out / "pretrain_config.yaml")
    rate = result.examples_per_s
    record = {"objectives": config.objectives, "momentum_distillation": config.momentum.enabled, "steps": result.final_step, "examples_per_s": rate,
              "first_loss": result.losses[0] if result.losses else None,
              "final_loss": result.losses[-1] if result.losses else None,
              "seconds": result.train_seconds, "model_dir": str(model_dir), "config": to_dict(config)}
    bad = extra["bad_files"].summary() if "bad_files" in extra else None
    if bad is not None:
        record["bad_files"] = bad
    return MMPretrainResult(model_dir, write_json(out / "metrics.json", record), result, rate, bad)
