"""Accuracy, throughput and memory of a text classifier on a labelled dataset."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from hybridformer.data import LengthBucketBatchSampler, TextCollator, TextDataset, iterate_batches, token_lengths
from hybridformer.training import peak_memory_mb

__all__ = ["ClassificationMetrics", "evaluate_classifier"]


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    dataset: TextDataset,
    collate: TextCollator,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> ClassificationMetrics:
    """Classify every example of ``dataset`` in eval mode and score the predictions.

    Batches hold similar lengths (longest first, so an out-of-memory error shows at once) and are
    tokenized before the clock starts, so ``tokens_per_s`` is the model's throughput.

    Args:
        model: ``model(**batch).logits`` is (B, num_labels), e.g. a
            :class:`~hybridformer.models.TextClassifier`.
        dataset: labelled examples (labels in the model's class order).
        collate: turns examples into a batch; its ``max_length`` truncates the inputs.
        batch_size: examples per forward pass.
        device: where to run; None = where the model's parameters are.

    Returns:
        ClassificationMetrics.
    """
    if len(dataset) == 0:
        raise ValueError(f"dataset: {dataset.name!r} is empty; nothing to evaluate")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    lengths = token_lengths(dataset, collate.tokenizer, collate.max_length)
    sampler = LengthBucketBatchSampler(lengths, batch_size, shuffle=False)
    batches = list(iterate_batches(dataset, collate, sampler))
    was_training = model.training
    model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    correct = tokens = 0
    seconds = 0.0
    try:
        for batch in batches:
            labels = batch.pop("labels")
            inputs = {k: v.to(device) for k, v in batch.items()}
            start = time.perf_counter()
            logits = model(**inputs).logits
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - start
            correct += int((logits.argmax(-1).cpu() == labels).sum())
            tokens += int(batch["attention_mask"].sum())
    finally:
        model.train(was_training)
    return ClassificationMetrics(
        accuracy=correct / len(dataset),
        n_examples=len(dataset),
        n_tokens=tokens,
        seconds=seconds,
        tokens_per_s=tokens / max(seconds, 1e-9),
        batch_size=batch_size,
        max_length=collate.max_length,
        peak_memory_mb=peak_memory_mb(device),
    )
