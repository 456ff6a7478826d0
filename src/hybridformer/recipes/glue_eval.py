"""``evaluate`` on a GLUE folder: the official scores of every dev part and the submission files of the test parts.

    hybridformer evaluate --model-dir runs/rte/model          # the GLUE folder recorded at fine-tuning

writes, in the evaluation folder: ``metrics.json`` (every dev part's scores), ``scores.md`` (the score
table), ``predictions.jsonl`` and ``confusion.png`` of the first dev part, and one submission file per
test part (``RTE.tsv``; ``MNLI-m.tsv`` and ``MNLI-mm.tsv``) in the layout the GLUE server takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hybridformer.data import TextCollator, TextDataset
from hybridformer.data.glue import GlueTask, write_glue_submission
from hybridformer.io import write_text
from hybridformer.recipes.metrics import ClassificationMetrics, Predictions, predict_classifier, score_predictions
from hybridformer.recipes.task_data import TaskDataConfig, glue_parts

__all__ = ["GlueEvaluation", "evaluate_glue", "score_table"]


@dataclass
class GlueEvaluation:
    """What :func:`evaluate_glue` computed."""

    task: GlueTask
    """The GLUE task."""
    dev: dict[str, ClassificationMetrics]
    """Scores per dev part (file stem), official metrics in ``official``."""
    dev_data: dict[str, TextDataset]
    """The dev parts scored."""
    dev_predictions: dict[str, Predictions]
    """The model's outputs per dev part."""
    submissions: list[Path]
    """One submission file per test part."""
    table_path: Path
    """``scores.md``."""


def _answers(task: GlueTask, predictions: Predictions) -> list[str | float]:
    """The submission's prediction per example: the label as the data writes it, or STS-B's score."""
    if task.labels is None:
        return [float(v) for v in predictions.logits[:, 0].tolist()]
    return [task.labels[i] for i in predictions.predicted.tolist()]


def score_table(task: GlueTask, dev: dict[str, ClassificationMetrics]) -> str:
    """A Markdown table of the official scores per dev part."""
    names = list(next(iter(dev.values())).official)
    lines = [f"| {task.name} part | examples | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    lines += [f"| {part} | {m.n_examples} | " + " | ".join(f"{m.official[n]:.4f}" for n in names) + " |"
              for part, m in dev.items()]
    return "\n".join(lines) + "\n"


def evaluate_glue(model, collate: TextCollator, data: TaskDataConfig, out: Path) -> GlueEvaluation:
    """Score every dev part of ``data.path`` by the task's official metric and write the test parts'
    submission files to ``out``.

    Raises:
        DataFileError: a missing or malformed GLUE file (named).
        ValueError: the model's classes differ from the task's.
    """
    task, dev, test = glue_parts(data)
    first = next(iter(dev.values()))
    if list(model.label_names or []) != list(first.label_names):
        raise ValueError(f"data.path: {task.name} has classes {first.label_names}, but the model was trained on "
                         f"{model.label_names}")
    predictions = {stem: predict_classifier(model, part, collate, data.eval_batch_size) for stem, part in dev.items()}
    scores = {stem: score_predictions(part, predictions[stem], data.max_length, task.metric) for stem, part in dev.items()}
    submissions = []
    for stem, suffix in task.test:
        outputs = predict_classifier(model, test[stem], collate, data.eval_batch_size)
        submissions.append(write_glue_submission(out, task, suffix, test[stem].ids, _answers(task, outputs)))
    table = write_text(out / "scores.md", score_table(task, scores))
    return GlueEvaluation(task, scores, dev, predictions, submissions, table)
