"""Distillation into a shallower student (SPEC §8): DistilBERT's recipe on our classifiers.

The student keeps the teacher's width and embeddings, pooler and head, and takes every other block
(3 of MiniLM's 6, 6 of a 12-layer base), so it starts as a thinned teacher rather than from scratch.
It trains on the frozen teacher's softened logits (temperature T), optionally the labels, and
optionally the teacher's hidden states (cosine) and attention outputs (MSE) at mapped blocks
(:class:`~hybridformer.losses.layer_distill.LayerDistillationObjective`). Either model may use
hybrid attention or gated FFNs (``student.attention`` / ``student.sparsity`` overrides).

    hybridformer distill --teacher runs/sentiment/model --data.task sentiment --out-dir runs/student
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridformer.attention import AttentionConfig
from hybridformer.config import ConfigError, as_partial, check, save_config, set_fields, to_dict
from hybridformer.data import LengthBucketBatchSampler, TextCollator, token_lengths
from hybridformer.encoders import TextEncoder
from hybridformer.encoders.text_checkpoint import TextCheckpoint, read_text_checkpoint
from hybridformer.io import write_json
from hybridformer.losses import ClassificationObjective
from hybridformer.losses.layer_distill import LayerDistillationObjective
from hybridformer.models import TextClassifier
from hybridformer.recipes.metrics import ClassificationMetrics, evaluate_classifier
from hybridformer.data.tokenizer import resolve_tokenizer
from hybridformer.recipes.model import AttentionChanges, SparsityChanges
from hybridformer.recipes.task_data import TaskDataConfig, load_task_data
from hybridformer.sparsity import SparsityConfig
from hybridformer.training import Trainer, TrainConfig, TrainResult
from hybridformer.registry import save_model

__all__ = ["DistillConfig", "DistillResult", "StudentConfig", "TeacherRun", "distill", "every_other_layer", "student_from_teacher"]

MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "distill_config.yaml"


def every_other_layer(n_layers: int) -> list[int]:
    """DistilBERT's pick: blocks 0, 2, 4, ... (half the layers, rounded up)."""
    return list(range(0, n_layers, 2))


def student_checkpoint(teacher: TextCheckpoint, layers: Sequence[int]) -> TextCheckpoint:
    """The teacher's folder contents with only the blocks ``layers``, renumbered 0, 1, ...

    Raises:
        ValueError: a layer out of range or repeated.
    """
    n = teacher.config.n_layers
    if not layers or len(set(layers)) != len(layers) or any(not 0 <= t < n for t in layers):
        raise ConfigError(f"student.layers: distinct teacher blocks in [0, {n}) expected, got {list(layers)}")
    state = {k: v for k, v in teacher.encoder_state.items() if not k.startswith("blocks.")}
    for new, old in enumerate(layers):
        prefix = f"blocks.{old}."
        state.update({f"blocks.{new}.{k[len(prefix):]}": v for k, v in teacher.encoder_state.items() if k.startswith(prefix)})
    config = dataclasses.replace(teacher.config, n_layers=len(layers))
    return TextCheckpoint(config, state, teacher.others, teacher.meta, f"{teacher.source} (blocks {list(layers)})")


@dataclass
class StudentConfig:
    """Which teacher blocks the student starts from, and how it attends and gates."""

    layers: list[int] | None = None
    """Teacher blocks copied into the student, in order; None: every other block (0, 2, 4 of 6)."""
    init_from: str | None = None
    """None: the blocks (and head) come from the fine-tuned teacher (DistilBERT's recipe). A folder
    (e.g. the pretrained checkpoint the teacher was fine-tuned from): the blocks come from it and the
    head is new, so the student starts knowing nothing of the task (the clean with/without-teacher
    comparison)."""
    attention: AttentionChanges = field(default_factory=AttentionChanges)
    """Changes to the student's attention (e.g. ``kind: hybrid, window: 64``); unset: the teacher's."""
    sparsity: SparsityChanges = field(default_factory=SparsityChanges)
    """Changes to the student's FFN gates (e.g. ``enabled: true, n_groups: 16``); unset: the teacher's."""

    def __post_init__(self) -> None:
        self.attention = as_partial(AttentionConfig, self.attention, "student.attention")
        self.sparsity = as_partial(SparsityConfig, self.sparsity, "student.sparsity")

    def overrides(self) -> dict[str, Any]:
        """Keyword overrides for ``TextClassifier.from_checkpoint`` (only what was set)."""
        return {name: changes for name in ("attention", "sparsity") if (changes := set_fields(getattr(self, name)))}


def student_from_teacher(teacher_dir: str | Path, student: StudentConfig | None = None) -> TextClassifier:
    """A student classifier initialised from the blocks ``student.layers`` of the classifier in
    ``teacher_dir`` (or of ``student.init_from``, with a new head for the teacher's classes).

    Raises:
        FileNotFoundError: no such folder; ValueError: not a float TextClassifier; ConfigError: bad overrides.
    """
    student = student or StudentConfig()
    checkpoint = read_text_checkpoint(teacher_dir)
    if checkpoint.meta.get("architecture") != "TextClassifier":
        raise ValueError(f"teacher: {teacher_dir} holds no trained TextClassifier (fine-tune one first)")
    meta = checkpoint.meta
    source = checkpoint if student.init_from is None else read_text_checkpoint(student.init_from)
    layers = student.layers if student.layers is not None else every_other_layer(source.config.n_layers)
    try:
        thinned = student_checkpoint(source, layers)
        if student.init_from is None:
            return TextClassifier.from_checkpoint(thinned, **student.overrides())
        encoder = TextEncoder.from_checkpoint(thinned, **student.overrides())
    except ConfigError as err:
        raise ConfigError(f"student.{err}") from None
    return TextClassifier(encoder, meta["num_labels"], dropout=meta["dropout"], pooling=meta["pooling"],
                          label_names=meta["label_names"])


def student_layers(config: DistillConfig, teacher: TextClassifier) -> list[int]:
    """The blocks the student was built from."""
    return config.student.layers or every_other_layer(teacher.encoder.config.n_layers)


def _default_train() -> TrainConfig:
    return TrainConfig(lr=1e-4, epochs=1.0, batch_size=16, out_dir="runs/distill")


@dataclass
class TeacherRun:
    """What every distillation run has: the teacher's folder and the logit term's temperature and share."""

    teacher: str | None = None
    """Required: the folder of the trained (float) teacher: a classifier (e.g. ``runs/sentiment/model``) or
    a multimodal model (e.g. ``runs/mm/model``); its architecture picks the recipe."""
    temperature: float = 2.0
    """Softening T of the teacher's logit (next-token) term (DistilBERT: 2)."""
    label_weight: float = 0.5
    """Share of the label (caption) cross-entropy beside the teacher's term, in [0, 1]; 1: no teacher at
    all (the student trained on the labels alone, the baseline distillation must beat)."""

    def __post_init__(self) -> None:
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        check(0.0 <= self.label_weight <= 1.0, "label_weight", f"must be in [0, 1], got {self.label_weight}")


@dataclass
class DistillConfig(TeacherRun):
    """A distillation run: teacher, student, data, the loss terms, training. Outputs go to ``train.out_dir``."""

    student: StudentConfig = field(default_factory=StudentConfig)
    """The student's blocks, attention and gates."""
    data: TaskDataConfig = field(default_factory=TaskDataConfig)
    """The task (the teacher's labels) and the input length."""
    train: TrainConfig = field(default_factory=_default_train)
    """Optimisation of the student; ``train.out_dir`` is the run folder."""
    hidden_weight: float = 1.0
    """Weight of the hidden-state cosine term at mapped blocks (DistilBERT's); 0: off."""
    attention_weight: float = 0.0
    """Weight of the attention-output MSE term at mapped blocks; 0: off."""
    layer_map: list[int] | None = None
    """Teacher block each student block matches; None: the last of its share (1, 3, 5 for 3 of 6)."""
    eval_splits: list[str] = field(default_factory=lambda: ["test"])
    """Splits the student (and the teacher, with ``evaluate_teacher``) is evaluated on after training."""
    evaluate_teacher: bool = True
    """Also evaluate the teacher, to report the share of its accuracy the student keeps."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.hidden_weight >= 0, "hidden_weight", f"must be >= 0, got {self.hidden_weight}")
        check(self.attention_weight >= 0, "attention_weight", f"must be >= 0, got {self.attention_weight}")
        for split in self.eval_splits:
            check(split in ("validation", "test"), "eval_splits", f"each must be 'validation' or 'test', got {split!r}")

    @property
    def uses_teacher(self) -> bool:
        """Whether any term reads the teacher."""
        return self.label_weight < 1.0 or self.hidden_weight > 0 or self.attention_weight > 0


@dataclass
class DistillResult:
    """What :func:`distill` returns."""

    model_dir: Path
    """The saved student (``hybridformer.registry.load_model`` reloads it) with its tokenizer."""
    model: TextClassifier
    """The trained student, in eval mode."""
    metrics: dict[str, ClassificationMetrics]
    """The student's evaluation per split."""
    teacher_metrics: dict[str, ClassificationMetrics]
    """The teacher's, per split (empty without ``evaluate_teacher``)."""
    train: TrainResult
    """The trainer's result."""
    metrics_path: Path
    """``metrics.json``."""


def distill(config: DistillConfig) -> DistillResult:
    """Build the student from the teacher, train it under the distillation objective, evaluate, save.

    Raises:
        ConfigError: no teacher, or a bad override; FileNotFoundError / ValueError: bad folders or data.
    """
    if config.teacher is None:
        raise ConfigError("teacher: is required: the folder of a trained classifier (--teacher DIR)")
    teacher = TextClassifier.from_pretrained(config.teacher)
    student = student_from_teacher(config.teacher, config.student)
    splits = load_task_data(config.data)
    if splits.train.label_names != teacher.label_names:
        raise ValueError(
            f"data.task: {config.data.task!r} has classes {splits.train.label_names}, the teacher {teacher.label_names}"
        )
    tokenizer = resolve_tokenizer(None, config.teacher)
    collate = TextCollator(tokenizer, max_length=config.data.max_length)
    lengths = token_lengths(splits.train, tokenizer, config.data.max_length)
    train_cfg = config.train
    sampler = LengthBucketBatchSampler(lengths, train_cfg.batch_size, drop_last=train_cfg.drop_last, seed=train_cfg.seed)
    objective: Any = ClassificationObjective()  # the no-teacher baseline
    if config.uses_teacher:
        objective = LayerDistillationObjective(
            teacher,
            config.temperature,
            config.label_weight,
            hidden_weight=config.hidden_weight,
            attention_weight=config.attention_weight,
            layer_map=config.layer_map,
        )
        if config.hidden_weight or config.attention_weight:
            objective.pairs(student)  # a bad map or widths fail before training
    result = Trainer(student, objective, splits.train, train_cfg, collate, batch_sampler=sampler).fit()
    batch = config.data.eval_batch_size
    metrics = {s: evaluate_classifier(student, splits[s], collate, batch) for s in config.eval_splits}
    teacher_metrics = (
        {s: evaluate_classifier(teacher, splits[s], collate, batch) for s in config.eval_splits}
        if config.evaluate_teacher
        else {}
    )
    out = Path(train_cfg.out_dir)
    model_dir = out / MODEL_DIR
    save_model(student, model_dir, tokenizer=tokenizer)
    save_config(config, out / CONFIG_FILE)
    record = {
        "task": config.data.task,
        "teacher": config.teacher,
        "student_layers": [int(k) for k in student_layers(config, teacher)],
        "student_init_from": config.student.init_from or config.teacher,
        "train": {"steps": result.final_step, "seconds": result.train_seconds, "tokens_per_s": result.tokens_per_s,
                  "final_loss": result.losses[-1] if result.losses else None},
        "student": {s: m.to_dict() for s, m in metrics.items()},
        "teacher_metrics": {s: m.to_dict() for s, m in teacher_metrics.items()},
        "config": to_dict(config),
    }
    metrics_path = write_json(out / METRICS_FILE, record)
    return DistillResult(model_dir, student.eval(), metrics, teacher_metrics, result, metrics_path)
