"""Evaluate a saved text classifier: scores per class, confusion matrix, predictions, speed and memory.

The data settings default to those the model was trained with (``training_data.json`` in its
folder, written by ``hybridformer finetune``); ``--data.*`` changes them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hybridformer.config import (
    ConfigError, apply_overrides, as_partial, check, partial_config, required_field, set_fields, to_dict,
)
from hybridformer.data import TextCollator, TextDataset
from hybridformer.evaluation import plot_confusion
from hybridformer.io import write_json, write_text
from hybridformer.models import TextClassifier
from hybridformer.recipes.metrics import ClassificationMetrics, Predictions, predict_classifier, score_predictions
from hybridformer.data.tokenizer import resolve_tokenizer
from hybridformer.recipes.glue_eval import evaluate_glue
from hybridformer.recipes.task_data import TaskDataConfig, load_eval_split, read_data_record
from hybridformer.training import resolve_device
from hybridformer.registry import architecture_at, load_model

__all__ = ["EvaluateConfig", "EvaluateResult", "TaskDataChanges", "evaluate", "resolve_eval_data"]

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
CONFUSION_FILE = "confusion.png"
_log = logging.getLogger("hybridformer.recipes")

TaskDataChanges = partial_config(TaskDataConfig)
"""Typed changes to the data settings a model was trained with (None = keep)."""


@dataclass
class EvaluateConfig:
    """Which saved model to evaluate, on what, and where the results go."""

    model_dir: str | None = required_field()
    """Required: a classifier folder, the ``model/`` folder of a ``hybridformer finetune`` run (or one
    written by ``TextClassifier.save_pretrained``)."""
    data: TaskDataChanges = field(default_factory=TaskDataChanges)
    """Changes to the data settings the model was trained with (its ``training_data.json``: task,
    files, columns, max length); unset fields keep them, and a model without the record starts from
    the defaults (task ``sentiment``). A different ``task`` starts from that task's defaults."""
    split: Literal["validation", "test"] = "test"
    """Which split to evaluate. A GLUE folder is evaluated whole: every dev part scored by the task's
    official metric (``scores.md``), every test part predicted into its GLUE submission file."""
    max_positions: int | None = None
    """Read inputs up to this many tokens, extending the model's positions by copying (e.g. 2048 for
    long BBC articles); None: the model's own. Raise ``data.max_length`` with it."""
    tokenizer: str | None = None
    """Tokenizer folder; None: the one saved with the model, else MiniLM's."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu`` or ``cuda[:N]``."""
    out_dir: str | None = None
    """Folder for ``metrics.json``, ``predictions.jsonl`` and ``confusion.png``; None:
    ``eval_<task>_<split>`` beside the model folder (in the run folder, not inside the model)."""

    def __post_init__(self) -> None:
        self.data = as_partial(TaskDataConfig, self.data, "data")
        check(
            self.max_positions is None or self.max_positions >= 2,
            "max_positions",
            f"must be >= 2 or None, got {self.max_positions}",
        )


@dataclass
class EvaluateResult:
    """What :func:`evaluate` returns."""

    metrics: ClassificationMetrics
    """Accuracy, macro-F1, per-class scores, confusion matrix, tokens/s and peak memory."""
    data: TaskDataConfig
    """The data settings used (the recorded ones with the changes applied)."""
    out_dir: Path
    """Where the files went."""
    metrics_path: Path
    """``metrics.json``: the metrics, the data settings used and the config."""
    predictions_path: Path
    """``predictions.jsonl``: one ``{"id", "label", "prediction", "probabilities"}`` per example."""
    confusion_path: Path | None
    """``confusion.png``: the confusion matrix drawn (None for a regression task)."""
    submissions: list[Path] = field(default_factory=list)
    """GLUE: the submission file of each test part (``RTE.tsv``, ``MNLI-m.tsv``, ...)."""


def resolve_eval_data(config: EvaluateConfig) -> TaskDataConfig:
    """The recorded data settings of ``config.model_dir`` (or the defaults) with ``config.data`` applied."""
    changes = set_fields(config.data)
    base = read_data_record(config.model_dir) if config.model_dir is not None else None
    if base is None or ("task" in changes and changes["task"] != base.task):
        base = TaskDataConfig(task=changes.get("task", "sentiment"))
    try:
        return apply_overrides(base, changes)
    except ConfigError as err:
        raise ConfigError(f"data.{err}") from None


def _with_ids(dataset: TextDataset) -> TextDataset:
    """Examples without ids get their row number in the split (0-based; for a file, its data rows)."""
    if dataset.ids is not None:
        return dataset
    return dataclasses.replace(dataset, ids=[str(i) for i in range(len(dataset))])


def _write_predictions(path: Path, dataset: TextDataset, predictions: Predictions) -> Path:
    names = dataset.label_names
    lines = []
    if dataset.targets is not None:  # regression: the target and the predicted value
        for i, (target, value) in enumerate(zip(dataset.targets, predictions.logits[:, 0].tolist())):
            row = {"id": dataset.ids[i] if dataset.ids else str(i), "label": target, "prediction": round(value, 6)}
            lines.append(json.dumps(row) + "\n")
        return write_text(path, "".join(lines))
    for i, (probs, pred) in enumerate(zip(predictions.probabilities.tolist(), predictions.predicted.tolist())):
        row = {"id": dataset.ids[i] if dataset.ids else str(i), "label": names[dataset.labels[i]],
               "prediction": names[pred], "probabilities": {n: round(p, 6) for n, p in zip(names, probs)}}
        lines.append(json.dumps(row) + "\n")
    return write_text(path, "".join(lines))


def evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Load the classifier in ``config.model_dir``, classify the split, write and return the results.

    Raises:
        ConfigError: no ``model_dir``, or a bad data change.
        FileNotFoundError: the model folder or a data file is missing.
        ValueError: the folder holds no classifier, the data's classes differ from the model's, or
            inputs longer than the model's positions (raise ``max_positions``).
    """
    if config.model_dir is None:
        raise ConfigError("model_dir: is required: the folder of a saved classifier (--model-dir DIR)")
    overrides = {} if config.max_positions is None else {"max_positions": config.max_positions}
    if architecture_at(config.model_dir).model_class is not TextClassifier:
        raise ValueError(f"model_dir: {config.model_dir} holds a {architecture_at(config.model_dir).name}, not a "
                         "TextClassifier (a multimodal model is evaluated with --task TASK --model DIR)")
    try:
        model = load_model(config.model_dir, **overrides)
    except ConfigError as err:
        raise ConfigError(f"max_positions: {err}") from None
    data = resolve_eval_data(config)
    positions = model.encoder.config.max_positions
    if data.max_length > positions:
        raise ValueError(
            f"data.max_length: {data.max_length} exceeds the model's {positions} positions; "
            f"set max_positions={data.max_length} to extend them"
        )
    label_names = model.label_names or [str(k) for k in range(model.num_labels)]
    split = "dev" if data.task == "glue" else config.split
    out = Path(config.out_dir) if config.out_dir else Path(config.model_dir).parent / f"eval_{data.task}_{split}"
    tokenizer = resolve_tokenizer(config.tokenizer, config.model_dir)
    model.to(resolve_device(config.device))
    collate = TextCollator(tokenizer, max_length=data.max_length)
    extra: dict = {}
    if data.task == "glue":  # every dev part scored, every test part predicted into its submission file
        _log.info(f"evaluating {config.model_dir} on the GLUE folder {data.path}; results to {out}")
        glue = evaluate_glue(model, collate, data, out)
        first = next(iter(glue.dev))
        dataset, predictions, metrics = glue.dev_data[first], glue.dev_predictions[first], glue.dev[first]
        extra = {"glue": {part: m.official for part, m in glue.dev.items()},
                 "submissions": [str(p) for p in glue.submissions], "scores_table": str(glue.table_path)}
    else:
        dataset = _with_ids(load_eval_split(data, config.split, label_names))
        _log.info(f"evaluating {config.model_dir} on {data.task} {config.split}: {len(dataset)} examples, "
                  f"max_length {data.max_length}; results to {out}")
        predictions = predict_classifier(model, dataset, collate, data.eval_batch_size)
        metrics = score_predictions(dataset, predictions, data.max_length)
    record = {"model_dir": config.model_dir, "task": data.task, "split": split, "label_names": label_names,
              **metrics.to_dict(), **extra, "data": to_dict(data), "config": to_dict(config)}
    confusion = None if dataset.is_regression else plot_confusion(
        metrics.confusion, label_names, out / CONFUSION_FILE,
        f"{data.task} {split}: accuracy {metrics.accuracy:.3f}, macro-F1 {metrics.macro_f1:.3f}",
    )
    return EvaluateResult(
        metrics=metrics,
        data=data,
        out_dir=out,
        metrics_path=write_json(out / METRICS_FILE, record),
        predictions_path=_write_predictions(out / PREDICTIONS_FILE, dataset, predictions),
        confusion_path=confusion,
        submissions=list(glue.submissions) if data.task == "glue" else [],
    )
