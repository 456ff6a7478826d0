"""Distillation of the multimodal model into a student with half its text-encoder and decoder blocks.

DistilBERT's recipe on :class:`~hybridformer.models.MultimodalModel`: the student keeps the teacher's
width, image/video trunks, embeddings and heads, and takes every other block of the text encoder and
of the joint decoder (so it starts as a thinned teacher). It trains on image-text pairs under
:class:`~hybridformer.losses.CaptionDistillationObjective`: the frozen teacher's softened next-token
distributions (temperature T) and, with ``label_weight``, the captions themselves; ``label_weight 1``
is the same student trained without the teacher. Both are evaluated on the held-out pairs (caption
loss and next-token accuracy).

    hybridformer distill --teacher runs/mm/model --data.task mnist5k --out-dir runs/mm-student
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hybridformer.config import ConfigError, check, save_config, to_dict
from hybridformer.recipes.distill import TeacherRun, every_other_layer
from hybridformer.io import write_json
from hybridformer.losses import CaptionObjective
from hybridformer.losses.caption_distill import CaptionDistillationObjective
from hybridformer.models.prompt_format import save_decoder_prompt_format
from hybridformer.recipes.multimodal_common import MMDataConfig, task_data
from hybridformer.training import Trainer, TrainConfig, TrainResult
from hybridformer.registry import save_model

__all__ = ["MMDistillConfig", "MMDistillResult", "caption_metrics", "mm_distill", "multimodal_student"]


def multimodal_student(teacher: nn.Module, text_layers: Sequence[int] | None = None,
                       decoder_layers: Sequence[int] | None = None) -> nn.Module:
    """A multimodal model with the teacher's blocks ``text_layers`` / ``decoder_layers`` (default every
    other one) renumbered 0, 1, ..., and every other tensor copied from the teacher.

    Raises:
        ConfigError: a block out of range or repeated.
    """
    from hybridformer.models.multimodal_checkpoint import build_multimodal, model_from_state

    config = teacher.config
    picks = {}
    for part, layers, n in (("text_encoder", text_layers, config.text.n_layers),
                            ("decoder", decoder_layers, config.decoder.n_layers)):
        layers = list(layers) if layers is not None else every_other_layer(n)
        if not layers or len(set(layers)) != len(layers) or any(not 0 <= k < n for k in layers):
            raise ConfigError(f"student.{part}_layers: distinct teacher blocks in [0, {n}) expected, got {layers}")
        picks[part] = layers
    student_config = dataclasses.replace(
        config, text=dataclasses.replace(config.text, n_layers=len(picks["text_encoder"])),
        decoder=dataclasses.replace(config.decoder, n_layers=len(picks["decoder"])),
    )
    renumber = {f"{part}.blocks.{old}.": f"{part}.blocks.{new}." for part, layers in picks.items()
                for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher.state_dict().items():
        part = next((p for p in picks if key.startswith(f"{p}.blocks.")), None)
        if part is None:
            state[key] = value.clone()
            continue
        prefix = ".".join(key.split(".")[:3]) + "."  # e.g. decoder.blocks.2.
        if prefix in renumber:
            state[renumber[prefix] + key[len(prefix):]] = value.clone()
    with torch.device("meta"):
        build_multimodal(student_config)  # fails here, not in loading, on a config the blocks do not fit
    return model_from_state(student_config, state, "the teacher's blocks")


@dataclass
class MMStudentConfig:
    """Which teacher blocks the student starts from."""

    text_encoder_layers: list[int] | None = None
    """Text-encoder blocks copied into the student; None: every other one (0, 2, ...)."""
    decoder_layers: list[int] | None = None
    """Joint-decoder blocks copied into the student; None: every other one."""


def _default_train() -> TrainConfig:
    return TrainConfig(lr=3e-4, max_steps=100, batch_size=32, out_dir="runs/mm-distill", log_every=5,
                       keep_checkpoints=False)


@dataclass
class MMDistillConfig(TeacherRun):
    """A multimodal distillation run. Outputs go to ``train.out_dir``."""

    eval_examples: int = 500
    """Held-out pairs the student and the teacher are evaluated on (spread over the test split)."""
    student: MMStudentConfig = field(default_factory=MMStudentConfig)
    """The student's blocks."""
    data: MMDataConfig = field(default_factory=MMDataConfig)
    """The image-text pairs (train: training; test: the evaluation)."""
    train: TrainConfig = field(default_factory=_default_train)
    """Optimisation of the student; ``train.out_dir`` is the run folder."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.eval_examples >= 1, "eval_examples", f"must be >= 1, got {self.eval_examples}")


@dataclass
class MMDistillResult:
    """What :func:`mm_distill` returns."""

    model_dir: Path
    """The saved student (``hybridformer.registry.load_model``) with its tokenizer."""
    model: nn.Module
    """The trained student, in eval mode."""
    metrics: dict[str, float]
    """The student's held-out ``caption_loss`` and ``caption_accuracy``."""
    teacher_metrics: dict[str, float]
    """The teacher's, on the same pairs."""
    train: TrainResult
    """The trainer's result."""
    metrics_path: Path
    """``metrics.json``."""


@torch.no_grad()
def caption_metrics(model: nn.Module, dataset: Any, collate: Any, limit: int, batch_size: int = 64) -> dict[str, float]:
    """Mean next-token ``caption_loss`` and ``caption_accuracy`` of ``model`` over ``limit`` pairs of
    ``dataset`` (spread evenly), weighted by their real targets."""
    from hybridformer.losses.captioning import caption_targets
    from hybridformer.losses.mlm import IGNORE_INDEX
    from hybridformer.recipes.multimodal_metrics import spread

    objective, was_training = CaptionObjective(), model.training
    model.eval()
    picks = spread(len(dataset), limit)
    loss = correct = targets = 0.0
    for start in range(0, len(picks), batch_size):
        batch = collate([dataset[i] for i in picks[start : start + batch_size]])
        out = objective(model, batch)
        real = float((caption_targets(batch["input_ids"], batch.get("attention_mask")) != IGNORE_INDEX).sum())
        loss += float(out.metrics["caption_loss"]) * real
        correct += float(out.metrics["caption_accuracy"]) * real
        targets += real
    model.train(was_training)
    return {"caption_loss": loss / targets, "caption_accuracy": correct / targets, "examples": len(picks)}


def mm_distill(config: MMDistillConfig) -> MMDistillResult:
    """Build the student from the teacher, train it, evaluate both, save the student.

    Raises:
        ConfigError: no teacher or bad blocks; FileNotFoundError / ValueError: bad folders.
    """
    from hybridformer.models import MultimodalModel
    from hybridformer.data.tokenizer import resolve_tokenizer

    if config.teacher is None:
        raise ConfigError("teacher: is required: the folder of a trained multimodal model (--teacher DIR)")
    teacher = MultimodalModel.from_pretrained(config.teacher).eval()
    torch.manual_seed(config.train.seed)
    student = multimodal_student(teacher, config.student.text_encoder_layers, config.student.decoder_layers)
    tokenizer = resolve_tokenizer(None, config.teacher)
    train, test, collate, _ = task_data("pretrain", config.data, tokenizer)
    objective: nn.Module = CaptionObjective() if config.label_weight == 1.0 else \
        CaptionDistillationObjective(teacher, config.temperature, config.label_weight)
    trainer = Trainer(student, objective, train, config.train, collate)
    result = trainer.fit()
    metrics = caption_metrics(student, test, collate, config.eval_examples)
    teacher_metrics = caption_metrics(teacher, test, collate, config.eval_examples)
    out = Path(config.train.out_dir)
    model_dir = out / "model"
    save_model(student, model_dir, tokenizer=tokenizer)
    save_decoder_prompt_format(model_dir, tokenizer, student.config.decoder)  # captions read as "[CLS] caption"
    trainer.discard_checkpoints()
    save_config(config, out / "distill_config.yaml")
    record = {
        "teacher": config.teacher,
        "student_blocks": {"text_encoder": student.config.text.n_layers, "decoder": student.config.decoder.n_layers},
        "train": {"steps": result.final_step, "seconds": result.train_seconds,
                  "final_loss": result.losses[-1] if result.losses else None},
        "student": metrics, "teacher_metrics": teacher_metrics, "config": to_dict(config),
    }
    return MMDistillResult(model_dir, student.eval(), metrics, teacher_metrics, result, write_json(out / "metrics.json", record))
