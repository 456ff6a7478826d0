"""Fine-tuning and evaluating the multimodal model per task.

    hybridformer finetune --task vqa --model runs/mm/model --data.train_fraction 0.1 --out-dir runs/vqa
    hybridformer evaluate --task vqa --model runs/vqa/model
    hybridformer evaluate --task vqa-zeroshot --vqa.answer rank --model runs/mm/model
    hybridformer finetune --task vqa --vqa.answer rank --model runs/mm/model --data.train_fraction 0.1

Tasks: ``vqa`` (answer classifier; VQA-v2 accuracy), ``image-classification`` (the image head),
``caption`` (the decoder's next-token loss; BLEU-4), ``video-classification`` (motion direction of
moving digits through the answer head), and for ``evaluate`` also ``retrieval`` (R@1/R@5),
``zeroshot-classification`` (text prompts) and ``vqa-zeroshot`` (no VQA training).

How a VQA model answers (``--vqa.answer``): ``classifier``, an answer head on the fused state; ``rank``,
every answer of the training vocabulary scored by the decoder's log-likelihood (by default less its
log-mean likelihood over reference training images, ``--vqa.rank_score pmi``, the zero-shot default)
and the best one taken;
``generate``, the decoder's greedy continuation. With ``rank`` or ``generate``, ``finetune --task vqa``
trains the decoder itself on the answers (:class:`~hybridformer.losses.VQAAnswerLMObjective`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from hybridformer.config import check, save_config, to_dict
from hybridformer.evaluation.vqa_candidates import OpeningCandidates
from hybridformer.io import write_json
from hybridformer.losses import (
    CaptionObjective, ImageClassificationObjective, VideoClassificationObjective, VQAAnswerLMObjective, VQAObjective,
)
from hybridformer.models.multimodal_config import HeadsConfig
from hybridformer.models.prompt_format import (PromptFormat, decoder_prompt_format, read_prompt_format,
                                               save_decoder_prompt_format)
from hybridformer.recipes import multimodal_metrics
from hybridformer.recipes.multimodal_common import MMDataConfig, load_model, task_data, tokenizer
from hybridformer.recipes.multimodal_model_config import MMModelConfig, as_model_config, model_tokenizer
from hybridformer.recipes.multimodal_user_data import make_trainer
from hybridformer.recipes.summary import announce, model_line, training_line
from hybridformer.training import TrainConfig
from hybridformer.registry import save_model

__all__ = ["FINETUNE_TASKS", "EVAL_TASKS", "MMFinetuneConfig", "MMEvaluateConfig", "mm_finetune", "mm_evaluate"]

FINETUNE_TASKS = ("vqa", "image-classification", "caption", "video-classification")
"""Tasks ``finetune --task`` trains."""
EVAL_TASKS = FINETUNE_TASKS + ("retrieval", "zeroshot-classification", "vqa-zeroshot")
"""Tasks ``evaluate --task`` scores."""


def _default_train() -> TrainConfig:
    return TrainConfig(lr=3e-4, max_steps=50, batch_size=32, out_dir="runs/mm-finetune", log_every=5,
                       keep_checkpoints=False)


@dataclass
class VQAAnswerConfig:
    """How a VQA model answers (tasks ``vqa`` and ``vqa-zeroshot``)."""

    answer: Literal["auto", "classifier", "rank", "generate"] = "auto"
    """``classifier``: the answer head (fine-tuned with soft VQA scores); ``rank``: each answer of the
    training split's vocabulary scored by the decoder's log-likelihood of ``answer [SEP]`` after
    ``[CLS] question``, with the image (prefilled once per question, candidates scored in a batch);
    ``generate``: the greedy continuation, cut at punctuation. ``rank`` and ``generate`` fine-tune the
    decoder on the answers. ``auto``: ``generate`` for ``vqa-zeroshot``; for ``vqa``, ``classifier``
    (fine-tuning, or a model with an answer head) or ``rank`` (a model fine-tuned without one)."""
    rank_score: Literal["auto", "likelihood", "pmi"] = "auto"
    """How ``rank`` scores a candidate. ``likelihood``: ``log p(answer [SEP] | question, image)``.
    ``pmi``: that minus ``log mean_k p(answer [SEP] | question, image_k)`` over ``reference_images``
    training images (Holtzman et al. 2021's domain-conditional PMI, the question as premise): the
    decoder's language prior is removed, and an answer wins by fitting this image better than images in
    general. Ties (within 1e-4; a model that does not read the image at all scores every answer 0) go
    to the training split's most frequent answer. Costs ``reference_images`` more prefills per distinct
    question. ``auto``: ``pmi`` for ``vqa-zeroshot`` (a caption-trained decoder's prior is noise there),
    ``likelihood`` for a fine-tuned ``vqa`` model (its prior, e.g. "yes"/"no" after "is this...?", was
    learnt from the answers: PMI would throw it away; results/multimodal.md, 0.96 vs 0.64)."""
    reference_images: int = 16
    """``pmi``: how many training examples (spread evenly over the split) marginalise the image."""
    candidates: Literal["auto", "all", "opening"] = "auto"
    """Which answers ``rank`` (and the majority-answer baseline) may give. ``all``: the training split's
    vocabulary. ``opening``: those the training split gives to questions opening with the same first
    ``candidate_words`` words (VQA's question types: "is this" takes yes/no), every answer for an
    opening training never saw (:mod:`hybridformer.evaluation.vqa_candidates`). ``auto``: ``opening``
    for ``vqa-zeroshot`` (a caption-trained decoder has never seen "yes" or "no"), ``all`` for a
    fine-tuned ``vqa`` model, which learnt which kind of answer a question takes."""
    candidate_words: int = 2
    """``opening``: how many opening words define a question's type."""

    def __post_init__(self) -> None:
        check(self.reference_images >= 1, "vqa.reference_images", f"must be >= 1, got {self.reference_images}")
        check(self.candidate_words >= 1, "vqa.candidate_words", f"must be >= 1, got {self.candidate_words}")

    def candidate_mode(self, task: str) -> str:
        """Which candidates ``task`` ranks (``candidates`` with ``auto`` resolved)."""
        if self.candidates != "auto":
            return self.candidates
        return "opening" if task == "vqa-zeroshot" else "all"

    def allowed_answers(self, task: str, train: Any) -> OpeningCandidates | None:
        """The opening prior of ``task`` learnt from the ``train`` split, or None when every answer competes."""
        if self.candidate_mode(task) != "opening":
            return None
        return OpeningCandidates.from_pairs(multimodal_metrics.question_answer_pairs(train), self.candidate_words)

    def score_mode(self, task: str) -> str:
        """How ``rank`` scores for ``task`` (``rank_score`` with ``auto`` resolved)."""
        if self.rank_score != "auto":
            return self.rank_score
        return "pmi" if task == "vqa-zeroshot" else "likelihood"

    def mode(self, task: str, has_answer_head: bool = True) -> str:
        """The answering mode of ``task`` (``auto`` resolved) for a model with or without an answer head."""
        if self.answer != "auto":
            return self.answer
        if task == "vqa-zeroshot":
            return "generate"
        return "classifier" if has_answer_head else "rank"


@dataclass
class _TaskRun:
    """What fine-tuning and evaluation runs share."""

    model: MMModelConfig = field(default_factory=MMModelConfig)
    """``--model tiny`` (a new model) or a saved folder (e.g. a pretraining run's ``model/``); pretrained
    parts with ``--model.image.weights`` / ``--model.video.weights`` / ``--model.text.weights``."""
    data: MMDataConfig = field(default_factory=MMDataConfig)
    """The data: a bundled set (``data.task``) or the user's files (``data.path``); ``data.train_fraction``
    for few-shot fine-tuning."""
    eval_limit: int | None = None
    """Score at most this many test examples (None: all)."""
    vqa: VQAAnswerConfig = field(default_factory=VQAAnswerConfig)
    """How a VQA model answers (``--vqa.answer classifier|rank|generate``)."""


@dataclass
class MMFinetuneConfig(_TaskRun):
    """A fine-tuning run of the multimodal model on one task."""

    task: str = "vqa"
    """vqa | image-classification | caption | video-classification."""
    train: TrainConfig = field(default_factory=_default_train)
    """Optimisation; ``train.out_dir`` is the run folder."""

    def __post_init__(self) -> None:
        self.model = as_model_config(self.model)
        check(self.task in FINETUNE_TASKS, "task", f"must be one of {', '.join(FINETUNE_TASKS)}, got {self.task!r}")
        check(self.task == "vqa" or self.vqa.answer == "auto", "vqa.answer", f"is for task vqa, not {self.task!r}")


@dataclass
class MMEvaluateConfig(_TaskRun):
    """Scoring a multimodal model on one task's test split."""

    task: str = "vqa"
    """One of :data:`EVAL_TASKS`."""
    out: str | None = None
    """Write the metrics JSON here (None: print only)."""

    def __post_init__(self) -> None:
        self.model = as_model_config(self.model)
        check(self.task in EVAL_TASKS, "task", f"must be one of {', '.join(EVAL_TASKS)}, got {self.task!r}")
        check(self.task in ("vqa", "vqa-zeroshot") or self.vqa.answer == "auto", "vqa.answer",
              f"is for tasks vqa and vqa-zeroshot, not {self.task!r}")
        check(self.task != "vqa-zeroshot" or self.vqa.answer != "classifier", "vqa.answer",
              "classifier needs a fine-tuned answer head; zero-shot VQA answers by rank or generate")


def _heads(task: str, extra: dict[str, Any], num_labels: int, vqa_mode: str) -> HeadsConfig | None:
    if task == "vqa" and vqa_mode == "classifier":
        return HeadsConfig(embed_dim=128, num_answers=len(extra["answers"]), answers=list(extra["answers"]))
    if task == "vqa":
        return HeadsConfig(embed_dim=128)  # the decoder answers: no answer head
    if task == "image-classification":
        return HeadsConfig(embed_dim=128, num_image_labels=num_labels)
    if task == "video-classification":
        return HeadsConfig(embed_dim=128, num_answers=len(extra["label_names"]), answers=list(extra["label_names"]))
    return None


def _video_objective(extra: dict[str, Any]) -> VideoClassificationObjective:
    return VideoClassificationObjective(extra["prompt_ids"], extra.get("label_key", "directions"))


def _objective(task: str, extra: dict[str, Any], vqa_mode: str) -> Any:
    return {"vqa": VQAObjective if vqa_mode == "classifier" else VQAAnswerLMObjective, "image-classification": ImageClassificationObjective, "caption": CaptionObjective,
            "video-classification": lambda: _video_objective(extra)}[task]()


def score(task: str, model: Any, data: MMDataConfig, *, limit: int | None = None, tok: Any = None,
          prompt_format: PromptFormat | None = None, vqa: VQAAnswerConfig | None = None) -> dict[str, float]:
    """The test metrics of ``task`` for ``model`` (None: the chance level where one is defined);
    generated answers and captions are asked in ``prompt_format`` (None: the decoder's training format),
    ranked answers after it; ``vqa`` says how a VQA model answers."""
    return scored(task, model, data, limit=limit, tok=tok, prompt_format=prompt_format, vqa=vqa).metrics


@dataclass
class Scored:
    """What :func:`scored` returns."""

    metrics: dict[str, float]
    """The task's test metrics."""
    report: Any = None
    """Image classification: the :class:`~hybridformer.evaluation.ClassificationReport` (per class, confusion)."""
    bad_files: dict[str, Any] | None = None
    """The user's files skipped as bad (``BadFiles.summary()``), None for a bundled set."""


def scored(task: str, model: Any, data: MMDataConfig, *, limit: int | None = None, tok: Any = None,
           prompt_format: PromptFormat | None = None, vqa: VQAAnswerConfig | None = None) -> Scored:
    """:func:`score` with the image-classification report and the bad-file summary."""
    tok = tok or tokenizer()
    data_task = {"retrieval": "pretrain", "zeroshot-classification": "pretrain", "vqa-zeroshot": "vqa"}.get(task, task)
    train, test, collate, extra = task_data(data_task, data, tok)
    if data_task == "vqa":
        extra = {**extra, "train": train}  # the reference images of PMI ranking
    bad = extra["bad_files"].summary() if "bad_files" in extra else None
    if task == "image-classification" and model is not None:
        model.eval()
        metrics, report = multimodal_metrics.image_classification_report(model, test, collate, extra["label_names"], limit=limit)
        return Scored(metrics, report, bad)
    return Scored(_score(task, model, data, test, collate, extra, tok, limit, prompt_format, vqa), None, bad)


def _score(task: str, model: Any, data: MMDataConfig, test: Any, collate: Any, extra: dict[str, Any], tok: Any,
           limit: int | None, prompt_format: PromptFormat | None, vqa: VQAAnswerConfig | None) -> dict[str, float]:
    if model is not None:
        model.eval()
    if task in ("vqa", "vqa-zeroshot"):
        vqa = vqa or VQAAnswerConfig()
        mode = vqa.mode(task, model is not None and model.answer_head is not None)
        allowed = vqa.allowed_answers(task, extra["train"]) if model is None or mode == "rank" else None
        if model is None or mode == "classifier":  # None: the majority answer (of the question's opening)
            return {"vqa_accuracy": multimodal_metrics.vqa_classifier_accuracy(model, test, collate, extra["answers"], limit=limit,
                                                                              allowed=allowed)}
        if mode == "rank":
            reference = (multimodal_metrics.reference_context(extra["train"], collate, vqa.reference_images)
                         if vqa.score_mode(task) == "pmi" else None)
            return {"vqa_accuracy": multimodal_metrics.vqa_ranked_accuracy(model, test, collate, tok, extra["answers"], limit=limit,
                                                                          prompt_format=prompt_format, reference=reference,
                                                                          allowed=allowed)}
        return {"vqa_accuracy": multimodal_metrics.vqa_generated_accuracy(model, test, collate, tok, limit=limit,
                                                                          prompt_format=prompt_format)}
    if task == "image-classification":
        return {"accuracy": multimodal_metrics.image_accuracy(model, test, collate, limit=limit)}
    if task == "caption":
        return {"bleu4": multimodal_metrics.caption_bleu4(model, test, collate, tok, limit=limit, prompt_format=prompt_format)}
    if task == "video-classification":
        return {"accuracy": multimodal_metrics.video_accuracy(model, test, collate, _video_objective(extra), limit=limit)}
    if task == "retrieval":
        return multimodal_metrics.retrieval(model, test, collate, limit=limit, generator=torch.Generator().manual_seed(data.seed))
    n_classes = len(extra["label_names"])
    if model is None:
        return {"accuracy": 1.0 / n_classes}
    return {"accuracy": multimodal_metrics.zeroshot_classification(model, test, collate, data.task, n_classes, tok, limit=limit)}


@dataclass
class MMFinetuneResult:
    """What :func:`mm_finetune` returns."""

    model_dir: Path
    """The fine-tuned model."""
    metrics: dict[str, float]
    """Test metrics of the task."""
    metrics_path: Path
    """``metrics.json``."""
    bad_files: dict[str, Any] | None = None
    """The user's files skipped as bad (``BadFiles.summary()``), None for a bundled set."""


def _write_report(report: Any, folder: Path) -> dict[str, str]:
    """The confusion PNG of an image-classification score, into ``folder``; its path for the record."""
    from hybridformer.evaluation.classification import plot_confusion

    png = plot_confusion(report.confusion, report.label_names, folder / "confusion.png", title="image classification")
    return {"confusion_png": str(png)}


def mm_finetune(config: MMFinetuneConfig) -> MMFinetuneResult:
    """Fine-tune on ``config.task``, save to ``<train.out_dir>/model`` and score the test split."""
    tok = model_tokenizer(config.model)
    train, _, collate, extra = task_data(config.task, config.data, tok)
    torch.manual_seed(config.train.seed)
    mode = config.vqa.mode(config.task)
    model = load_model(config.model, _heads(config.task, extra, len(extra.get("label_names", [])), mode),
                       video=config.task == "video-classification")
    trainer = make_trainer(model, _objective(config.task, extra, mode), train, config.train, collate)
    out = Path(config.train.out_dir)
    model_dir = out / "model"
    announce([
        f"fine-tuning on {config.task} with {len(train):,} {config.data.path or config.data.task} training examples",
        model_line(model, config.model.name), training_line(trainer),
        f"then: the model to {model_dir}, then {config.task} scored on the test split"
        f"{'' if config.eval_limit is None else f' ({config.eval_limit} examples)'}",
    ])
    result = trainer.fit()
    save_model(model, model_dir, tokenizer=tok)
    # Every task reads "[CLS] text" (a caption, a question, the video prompt) with the image as context.
    fmt = save_decoder_prompt_format(model_dir, tok, model.config.decoder)
    trainer.discard_checkpoints()  # unless train.keep_checkpoints: they only serve to resume this run
    save_config(config, out / "finetune_config.yaml")
    result_scored = scored(config.task, model, config.data, limit=config.eval_limit, tok=tok, prompt_format=fmt, vqa=config.vqa)
    metrics = result_scored.metrics
    record = {"task": config.task, "metrics": metrics, "steps": result.final_step, "examples_per_s": result.examples_per_s,
              "final_loss": result.losses[-1] if result.losses else None, "config": to_dict(config)}
    if result_scored.report is not None:
        record.update(report=result_scored.report.to_dict(), **_write_report(result_scored.report, out))
    bad = extra["bad_files"].summary() if "bad_files" in extra else None
    if bad is not None:
        record["bad_files"] = bad
    return MMFinetuneResult(model_dir, metrics, write_json(out / "metrics.json", record), bad)


def mm_evaluate_scored(config: MMEvaluateConfig) -> Scored:
    """Score ``config.model`` on ``config.task``'s test split; with ``config.out``, write the metrics
    JSON there (and, for image classification, the per-class report in it and ``confusion.png`` beside it)."""
    torch.manual_seed(0)
    model = load_model(config.model, video=config.task == "video-classification")
    name = config.model.name
    announce([model_line(model, name), f"scoring {config.task} on the {config.data.path or config.data.task} test split"
              f"{'' if config.eval_limit is None else f' ({config.eval_limit} examples)'}"])
    tok = model_tokenizer(config.model)
    fmt = None if name == "tiny" else read_prompt_format(name, decoder_prompt_format(tok, model.config.decoder))
    result = scored(config.task, model, config.data, limit=config.eval_limit, tok=tok, prompt_format=fmt, vqa=config.vqa)
    if config.out:
        record: dict[str, Any] = {"task": config.task, "model": name, "metrics": result.metrics}
        if result.report is not None:
            record.update(report=result.report.to_dict(), **_write_report(result.report, Path(config.out).parent))
        if result.bad_files is not None:
            record["bad_files"] = result.bad_files
        write_json(Path(config.out), record)
    return result


def mm_evaluate(config: MMEvaluateConfig) -> dict[str, float]:
    """The test metrics of :func:`mm_evaluate_scored`."""
    return mm_evaluate_scored(config).metrics
