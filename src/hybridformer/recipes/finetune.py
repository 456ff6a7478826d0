"""Fine-tune a pretrained text encoder on a classification task, evaluate it, optionally prune it, save it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from hybridformer.config import check, save_config, to_dict
from hybridformer.io import write_json
from hybridformer.data import LengthBucketBatchSampler, TextCollator, token_lengths
from hybridformer.losses import ClassificationObjective, Objective, RegressionObjective
from hybridformer.losses.gate_distill import GateDistillConfig, GateDistillObjective
from hybridformer.models import TextClassifier
from hybridformer.recipes.metrics import ClassificationMetrics, evaluate_classifier
from hybridformer.data.tokenizer import resolve_tokenizer
from hybridformer.recipes.model import ModelConfig, build_classifier
from hybridformer.recipes.pruning import PruneConfig, calibration_batches, prune_classifier
from hybridformer.recipes.summary import announce, model_line, training_line
from hybridformer.recipes.task_data import (
    TaskDataConfig, describe_splits, glue_task_of_config, load_task_data, write_data_record,
)
from hybridformer.sparsity import GatedFFN, PruneReport, rewire_by_importance
from hybridformer.training import Trainer, TrainConfig, TrainResult, seed_everything, use_deterministic
from hybridformer.registry import save_model

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "ffn_parameters", "metric_line"]

MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "finetune_config.yaml"


def _default_train() -> TrainConfig:
    # Checkpoints only serve resuming: keep the last one while training, none once the model is saved.
    return TrainConfig(lr=5e-5, epochs=1.0, batch_size=16, out_dir="runs/finetune", keep_last=1,
                       keep_checkpoints=False)


@dataclass
class FinetuneConfig:
    """A fine-tuning run: model, data, training, optional pruning. Outputs go to ``train.out_dir``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The pretrained encoder and its attention/FFN-gate changes."""
    data: TaskDataConfig = field(default_factory=TaskDataConfig)
    """The task, its files and the input length."""
    train: TrainConfig = field(default_factory=_default_train)
    """Optimisation; ``train.out_dir`` is the run folder (logs, checkpoints, ``model/``, ``metrics.json``)."""
    prune: PruneConfig = field(default_factory=PruneConfig)
    """Pruning of the gated FFNs after training (needs ``model.sparsity.enabled``)."""
    gate_distill: GateDistillConfig = field(default_factory=GateDistillConfig)
    """Distillation of the gated network while training, from its own full-width network or a frozen
    teacher (needs ``model.sparsity.enabled``)."""
    eval_splits: list[str] = field(default_factory=lambda: ["validation", "test"])
    """Splits evaluated after training (and again after pruning)."""

    def __post_init__(self) -> None:
        for split in self.eval_splits:
            check(split in ("validation", "test"), "eval_splits", f"each must be 'validation' or 'test', got {split!r}")
        check(
            not self.prune.enabled or self.model.gates().enabled,
            "prune.enabled",
            "pruning needs gated FFNs; also set model.sparsity.enabled=true",
        )
        check(
            not self.gate_distill.enabled or self.model.gates().enabled,
            "gate_distill.enabled",
            "distillation into gated FFNs needs them; also set model.sparsity.enabled=true",
        )

    @property
    def out_dir(self) -> Path:
        """The run folder."""
        return Path(self.train.out_dir)


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns."""

    model_dir: Path
    """The saved classifier (``hybridformer.registry.load_model`` reloads it) with its tokenizer."""
    model: TextClassifier
    """The trained (and pruned, when pruning) classifier itself, in eval mode."""
    metrics_path: Path
    """``metrics.json``: training figures, evaluation per split, pruning report, the config."""
    metrics: dict[str, ClassificationMetrics]
    """Evaluation of the saved (pruned, when pruning) model per split."""
    unpruned_metrics: dict[str, ClassificationMetrics]
    """Evaluation before pruning per split; empty without pruning."""
    train: TrainResult
    """The trainer's result (losses, tokens/s, peak memory)."""
    prune_report: PruneReport | None
    """What pruning removed; None without pruning."""
    ffn_params: int
    """Parameters of all FFN sublayers (gates included) of the saved model."""
    checkpoints: str = ""
    """What became of the training checkpoints (deleted, or kept and where)."""


def ffn_parameters(model: nn.Module) -> int:
    """Parameters of every FFN sublayer of ``model`` (dense or gated, gates included)."""
    return sum(p.numel() for m in model.modules() if isinstance(m, GatedFFN) for p in m.parameters())


def metric_line(metrics: ClassificationMetrics) -> str:
    """``accuracy 0.8123, macro-F1 0.8011`` (and the official metric(s) when the task has them)."""
    official = ", ".join(f"{k} {v:.4f}" for k, v in metrics.official.items())
    if metrics.official and not metrics.per_class:  # regression: only the official scores mean anything
        return official
    return f"accuracy {metrics.accuracy:.4f}, macro-F1 {metrics.macro_f1:.4f}" + (f"; {official}" if official else "")


def _train_summary(result: TrainResult, n_examples: int) -> dict[str, Any]:
    return {
        "examples": n_examples,
        "steps": result.final_step,
        "final_loss": result.losses[-1] if result.losses else None,
        "tokens_per_s": result.tokens_per_s,
        "examples_per_s": result.examples_per_s,
        "seconds": result.train_seconds,
        "peak_memory_mb": result.peak_memory_mb,
    }


def _objective(model: TextClassifier, config: GateDistillConfig, regression: bool) -> Objective:
    """What the classifier is trained on: the labels (a regression set's targets), or gate distillation."""
    if regression and config.enabled:
        raise ValueError("gate_distill.enabled: distillation into gated FFNs is for classifiers, not regression (STS-B)")
    if not config.enabled:
        return RegressionObjective() if regression else ClassificationObjective()
    teacher = TextClassifier.from_pretrained(config.teacher) if config.teacher is not None else None
    objective = GateDistillObjective(config, teacher)
    objective.check_model(model)
    return objective


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Run ``config``: train, evaluate on ``eval_splits``, prune and re-evaluate if asked, save.

    Raises:
        ConfigError: a bad override (unknown field, bad value, a field the checkpoint fixes).
        ValueError: bad data (missing column, unknown label, ...) or a diverged training run.
        FileNotFoundError: a missing file, folder or data package.
    """
    out_dir = config.out_dir
    splits = load_task_data(config.data)
    tokenizer = resolve_tokenizer(config.model.tokenizer, config.model.init_path())
    if config.train.deterministic:
        use_deterministic(True)
    seed_everything(config.train.seed)  # the new head, scorer and gates are drawn from the run's seed
    model = build_classifier(config.model, splits.train.label_names)
    collate = TextCollator(tokenizer, max_length=config.data.max_length)
    train_cfg = config.train
    lengths = token_lengths(splits.train, tokenizer, config.data.max_length)
    sampler = LengthBucketBatchSampler(
        lengths, train_cfg.batch_size, drop_last=train_cfg.drop_last, seed=train_cfg.seed
    )
    eval_batch = config.data.eval_batch_size
    rewire = config.model.rewire_ffn and config.model.gates().enabled
    # Rewiring (before training) and pruning (after) measure on the same training batches.
    calibration = (
        calibration_batches(
            splits.train, collate, lengths, train_cfg.batch_size, config.prune.calibration_batches, train_cfg.seed
        )
        if rewire or config.prune.enabled
        else []
    )
    if rewire:
        rewire_by_importance(model, calibration)

    official = glue_task_of_config(config.data).metric if config.data.task == "glue" else None

    def evaluate_split(split: str) -> ClassificationMetrics:
        return evaluate_classifier(model, splits[split], collate, eval_batch, official=official)

    def eval_fn(_: nn.Module) -> dict[str, float]:
        metrics = evaluate_split("validation")
        return {f"validation_{k}": v for k, v in {"accuracy": metrics.accuracy, **metrics.official}.items()}

    trainer = Trainer(
        model,
        _objective(model, config.gate_distill, splits.train.is_regression),
        splits.train,
        train_cfg,
        collate,
        eval_fn=eval_fn if train_cfg.eval_every else None,
        batch_sampler=sampler,
    )
    names = splits.train.label_names
    announce([
        f"fine-tuning a {len(names)}-class classifier on task {config.data.task!r}",
        *describe_splits(config.data, splits),
        f"labels: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}",
        model_line(model, config.model.init_path()) + f"; inputs truncated to {config.data.max_length} tokens",
        training_line(trainer),
        f"outputs: {out_dir} (model/, metrics.json, log.jsonl, checkpoints/ while training)",
    ])
    train_result = trainer.fit()
    announce([f"evaluating on {', '.join(config.eval_splits)}"
              f"{', pruning, evaluating again' if config.prune.enabled else ''}, then saving to {out_dir / MODEL_DIR}"])

    def evaluate_all() -> dict[str, ClassificationMetrics]:
        # a part without labels (GLUE's test files) is predicted by `evaluate`, not scored here
        return {s: evaluate_split(s) for s in config.eval_splits if splits[s].labelled}

    metrics = evaluate_all()
    unpruned: dict[str, ClassificationMetrics] = {}
    report = None
    if config.prune.enabled:
        report = prune_classifier(model, calibration, config.prune)
        unpruned, metrics = metrics, evaluate_all()

    out = out_dir
    model_dir = out / MODEL_DIR
    save_model(model, model_dir, tokenizer=tokenizer)
    write_data_record(config.data, names, model_dir)
    checkpoints = trainer.discard_checkpoints()
    save_config(config, out / CONFIG_FILE)
    ffn_params = ffn_parameters(model)
    record = {
        "task": config.data.task,
        "label_names": splits.train.label_names,
        "train": _train_summary(train_result, len(splits.train)),
        **{split: m.to_dict() for split, m in metrics.items()},
        "unpruned": {split: m.to_dict() for split, m in unpruned.items()},
        "ffn_params": ffn_params,
        "prune": report.to_dict() if report is not None else None,
        "model_dir": str(model_dir),
        "config": to_dict(config),
    }
    metrics_path = write_json(out / METRICS_FILE, record)
    announce([f"{split}: {metric_line(m)}" for split, m in metrics.items()] + [checkpoints])
    return FinetuneResult(
        model_dir=model_dir,
        model=model.eval(),
        metrics_path=metrics_path,
        metrics=metrics,
        unpruned_metrics=unpruned,
        train=train_result,
        prune_report=report,
        ffn_params=ffn_params,
        checkpoints=checkpoints,
    )
