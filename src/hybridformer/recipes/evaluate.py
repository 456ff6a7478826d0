"""Evaluate a saved text classifier on a task's split or the user's file: accuracy, tokens/s, memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hybridformer.config import ConfigError, check, to_dict
from hybridformer.data import TextCollator
from hybridformer.io import write_json
from hybridformer.models import TextClassifier
from hybridformer.recipes.metrics import ClassificationMetrics, evaluate_classifier
from hybridformer.recipes.model import resolve_tokenizer
from hybridformer.recipes.task_data import TaskDataConfig, load_eval_split
from hybridformer.training import resolve_device

__all__ = ["EvaluateConfig", "EvaluateResult", "evaluate"]


@dataclass
class EvaluateConfig:
    """Which saved model to evaluate, on what, and where the JSON report goes."""

    model_dir: str | None = None
    """Required: a classifier folder, the ``model/`` folder of a ``hybridformer finetune`` run (or one
    written by ``TextClassifier.save_pretrained``)."""
    data: TaskDataConfig = field(default_factory=TaskDataConfig)
    """The task (its ``test_file``/``validation_file`` for ``task=file``) and the input length."""
    split: Literal["validation", "test"] = "test"
    """Which split to evaluate."""
    max_positions: int | None = None
    """Read inputs up to this many tokens, extending the model's positions by copying (e.g. 2048 for
    long BBC articles); None: the model's own. Raise ``data.max_length`` with it."""
    tokenizer: str | None = None
    """Tokenizer folder; None: the one saved with the model, else MiniLM's."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu`` or ``cuda[:N]``."""
    out: str | None = None
    """Where the JSON report goes; None: ``<model_dir>/eval_<task>_<split>.json``."""

    def __post_init__(self) -> None:
        check(
            self.max_positions is None or self.max_positions >= 2,
            "max_positions",
            f"must be >= 2 or None, got {self.max_positions}",
        )

    def report_path(self) -> Path:
        """The JSON report's path."""
        if self.out is not None:
            return Path(self.out)
        return Path(self.model_dir or ".") / f"eval_{self.data.task}_{self.split}.json"


@dataclass
class EvaluateResult:
    """What :func:`evaluate` returns."""

    metrics: ClassificationMetrics
    """Accuracy, tokens/s and peak memory."""
    report_path: Path
    """The JSON report written."""


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Load the classifier in ``config.model_dir``, classify the split, write and return the metrics.

    Raises:
        FileNotFoundError: the model folder or a data file is missing.
        ValueError: the folder holds no classifier, the data's classes differ from the model's, or
            inputs longer than the model's positions (raise ``max_positions``).
    """
    if config.model_dir is None:
        raise ConfigError("model_dir: is required: the folder of a saved classifier (--model-dir DIR)")
    overrides = {} if config.max_positions is None else {"max_positions": config.max_positions}
    try:
        model = TextClassifier.from_pretrained(config.model_dir, **overrides)
    except ConfigError as err:
        raise ConfigError(f"max_positions: {err}") from None
    positions = model.encoder.config.max_positions
    if config.data.max_length > positions:
        raise ValueError(
            f"data.max_length: {config.data.max_length} exceeds the model's {positions} positions; "
            f"set max_positions={config.data.max_length} to extend them"
        )
    label_names = model.label_names or [str(k) for k in range(model.num_labels)]
    dataset = load_eval_split(config.data, config.split, label_names)
    tokenizer = resolve_tokenizer(config.tokenizer, config.model_dir)
    device = resolve_device(config.device)
    model.to(device)
    collate = TextCollator(tokenizer, max_length=config.data.max_length)
    metrics = evaluate_classifier(model, dataset, collate, config.data.eval_batch_size, device)
    path = config.report_path()
    record = {"model_dir": config.model_dir, "task": config.data.task, "split": config.split,
              **metrics.to_dict(), "config": to_dict(config)}
    write_json(path, record)
    return EvaluateResult(metrics=metrics, report_path=path)
