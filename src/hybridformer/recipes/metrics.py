"""Scores (accuracy, macro-F1, per class, confusion; a GLUE task's official metric), throughput and memory
of a text classifier (or STS-B's 1-output regressor) on a labelled dataset."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from torch import Tensor

from hybridformer.data import LengthBucketBatchSampler, TextCollator, TextDataset, iterate_batches, token_lengths
from hybridformer.evaluation import classification_report
from hybridformer.recipes.progress import track
from hybridformer.evaluation.glue import glue_scores
from hybridformer.training import peak_memory_mb

__all__ = ["ClassificationMetrics", "Predictions", "evaluate_classifier", "predict_classifier", "score_predictions"]


@dataclass
class Predictions:
    """What :func:`predict_classifier` returns: the model's class probabilities, in dataset order."""

    probabilities: Tensor
    """(N, num_labels) float32 softmax of the logits, row i for ``dataset[i]``."""
    logits: Tensor
    """(N, num_labels) float32 raw outputs (a regressor's predicted value in column 0)."""
    n_tokens: int
    """Real (non-padding) tokens read."""
    seconds: float
    """Wall time of the forward passes alone."""
    batch_size: int
    """Examples per forward pass."""
    peak_memory_mb: float
    """As :attr:`ClassificationMetrics.peak_memory_mb`."""

    @property
    def predicted(self) -> Tensor:
        """(N,) int64 arg-max class per example."""
        return self.probabilities.argmax(-1)


@dataclass
class ClassificationMetrics:
    """What :func:`evaluate_classifier` measured."""

    accuracy: float
    """Fraction of examples whose arg-max class is the label, in [0, 1]."""
    n_examples: int
    """Examples evaluated."""
    n_tokens: int
    """Real (non-padding) tokens the model read, after truncation."""
    seconds: float
    """Wall time of the forward passes alone (tokenization excluded)."""
    tokens_per_s: float
    """``n_tokens / seconds``: inference throughput at batch size ``batch_size``."""
    batch_size: int
    """Examples per forward pass."""
    max_length: int
    """Truncation length of the inputs."""
    peak_memory_mb: float
    """CUDA: peak allocated tensor memory during evaluation. CPU: peak resident memory of the whole
    process so far (the OS keeps no per-phase figure; measure in a fresh process for a clean one)."""
    macro_f1: float = 0.0
    """Unweighted mean over the classes of their F1 (scikit-learn's ``f1_score(average="macro")``)."""
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per class name: ``precision``, ``recall``, ``f1``, ``support`` (zero_division=0)."""
    confusion: list[list[int]] = field(default_factory=list)
    """``confusion[i][j]``: examples of class i predicted as class j, in ``label_names`` order."""
    official: dict[str, float] = field(default_factory=dict)
    """The task's official metric(s) when it has one (GLUE: ``accuracy``, ``f1``, ``matthews``,
    ``pearson``/``spearman``); a regression set has only these (its ``accuracy`` and ``macro_f1`` are 0)."""
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@torch.no_grad()
def predict_classifier(
    model: nn.Module,
    dataset: TextDataset,
    collate: TextCollator,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> Predictions:
    """Class probabilities of every example of ``dataset`` in eval mode, in dataset order.

    Batches hold similar lengths (longest first, so an out-of-memory error shows at once) and are
    tokenized before the clock starts, so the timing is the model's alone.

    Args:
        model: ``model(**batch).logits`` is (B, num_labels), e.g. a
            :class:`~hybridformer.models.TextClassifier`.
        dataset: the examples (labels, if any, are not used here).
        collate: turns examples into a batch; its ``max_length`` truncates the inputs.
        batch_size: examples per forward pass.
        device: where to run; None = where the model's parameters are.
    """
    if len(dataset) == 0:
        raise ValueError(f"dataset: {dataset.name!r} is empty; nothing to evaluate")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    lengths = token_lengths(dataset, collate.tokenizer, collate.max_length)
    order = [list(b) for b in LengthBucketBatchSampler(lengths, batch_size, shuffle=False)]
    batches = list(iterate_batches(dataset, collate, order))
    was_training = model.training
    model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    logits_all: Tensor | None = None
    tokens = 0
    seconds = 0.0
    try:
        for indices, batch in track(zip(order, batches), len(order), f"classifying {len(dataset):,} examples"):
            batch.pop("labels", None)
            inputs = {k: v.to(device) for k, v in batch.items()}
            start = time.perf_counter()
            logits = model(**inputs).logits
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - start
            if logits_all is None:
                logits_all = torch.empty(len(dataset), logits.shape[-1])
            logits_all[torch.tensor(indices)] = logits.float().cpu()  # (B, C) rows in dataset order
            tokens += int(batch["attention_mask"].sum())
    finally:
        model.train(was_training)
    assert logits_all is not None
    return Predictions(logits_all.softmax(-1), logits_all, tokens, seconds, batch_size, peak_memory_mb(device))


def score_predictions(dataset: TextDataset, predictions: Predictions, max_length: int,
                      official: str | None = None) -> ClassificationMetrics:
    """Score :func:`predict_classifier`'s output against ``dataset``'s labels (a regression set: against
    its targets); ``official`` names a GLUE metric (:func:`~hybridformer.evaluation.glue.glue_scores`)."""
    if not dataset.labelled:
        raise ValueError(f"dataset: {dataset.name!r} has no labels to score (a test part: predict it instead)")
    timing = dict(n_examples=len(dataset), n_tokens=predictions.n_tokens, seconds=predictions.seconds,
                  tokens_per_s=predictions.n_tokens / max(predictions.seconds, 1e-9),
                  batch_size=predictions.batch_size, max_length=max_length, peak_memory_mb=predictions.peak_memory_mb)
    if dataset.targets is not None:
        values = predictions.logits[:, 0].tolist()
        return ClassificationMetrics(accuracy=0.0, **timing,
                                     official=glue_scores(official or "pearson", dataset.targets, values))
    report = classification_report(dataset.labels, predictions.predicted, dataset.label_names)
    task_scores = glue_scores(official, dataset.labels, predictions.predicted.tolist()) if official else {}
    return ClassificationMetrics(
        accuracy=report.accuracy,
        **timing,
        macro_f1=report.macro_f1,
        per_class={name: asdict(scores) for name, scores in report.per_class.items()},
        confusion=report.confusion,
        official=task_scores,
    )


def evaluate_classifier(
    model: nn.Module,
    dataset: TextDataset,
    collate: TextCollator,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    official: str | None = None,
) -> ClassificationMetrics:
    """Classify every example of ``dataset`` in eval mode and score the predictions
    (:func:`predict_classifier`, then :func:`score_predictions`; arguments as there)."""
    predictions = predict_classifier(model, dataset, collate, batch_size, device)
    return score_predictions(dataset, predictions, collate.max_length, official)
