"""Evaluation of the multimodal model per task: retrieval R@k, zero-shot classification by text
prompts, image / video classification accuracy, VQA accuracy (answer classifier, ranked or generated
answers, scored by :func:`hybridformer.evaluation.vqa_accuracy`) and caption BLEU-4 (sacrebleu).
Every figure is a fraction in [0, 1] (BLEU divided by 100). This module runs the model; the metrics
themselves are pure functions of :mod:`hybridformer.evaluation` (R@k, VQA answers and accuracy)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Subset

from hybridformer.data.batches import iterate_batches
from hybridformer.data.image_text import templated_caption
from hybridformer.evaluation.retrieval import chance_recall_at_k, recall_at_k
from hybridformer.evaluation.vqa import extract_answer, vqa_accuracy
from hybridformer.evaluation.vqa_candidates import OpeningCandidates
from hybridformer.losses.multimodal_tasks import VideoClassificationObjective
from hybridformer.models.answer_ranking import best_candidates, candidate_ids, candidate_log_likelihoods, candidate_pmi
from hybridformer.models.prompt_format import PromptFormat, decoder_prompt_format
from hybridformer.recipes.progress import track

__all__ = ["spread", "retrieval", "zeroshot_classification", "image_accuracy", "image_classification_report", "video_accuracy",
           "vqa_classifier_accuracy", "reference_context", "vqa_ranked_answers",
           "vqa_ranked_accuracy", "generated_answers", "vqa_generated_accuracy", "caption_bleu4"]


def spread(n_total: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(n_total)`` (all of them when ``limit`` is None):
    the splits are ordered by class, so the first ``limit`` would hold only the first classes.

    Staggered: the i-th index is ``i * n_total // limit`` plus ``i mod stride`` (stride =
    ``n_total // limit``), still inside its own stride. A plain stride aliases with a set's period
    (VQA's 4 questions per image at stride 10 picked only the 1st and 3rd question of each image; 5
    captions per image at stride 5 only the first caption); the offset walks through every phase."""
    if limit is None or limit >= n_total:
        return list(range(n_total))
    stride = n_total // limit
    return [i * n_total // limit + i % stride for i in range(limit)]


def _batches(dataset: Any, collate: Any, batch_size: int, limit: int | None = None):
    chosen = spread(len(dataset), limit)
    order = [chosen[i:i + batch_size] for i in range(0, len(chosen), batch_size)]
    return track(iterate_batches(dataset, collate, order), len(order), f"scoring {len(chosen):,} test examples")


@torch.no_grad()
def _embeddings(model: nn.Module, dataset: Any, collate: Any, limit: int | None) -> tuple[Tensor, Tensor, list[str], Tensor]:
    images, texts, captions, labels = [], [], [], []
    for batch in _batches(dataset, collate, 64, limit):
        out = model.contrastive(batch["input_ids"], batch["attention_mask"], batch["images"])
        images.append(out.image_embeddings)
        texts.append(out.text_embeddings)
        labels.append(batch["labels"])
    captions = [dataset[i].caption for i in spread(len(dataset), limit)]
    return torch.cat(images), torch.cat(texts), captions, torch.cat(labels)


def retrieval(model: nn.Module | None, dataset: Any, collate: Any, *, limit: int | None = None,
              generator: torch.Generator | None = None) -> dict[str, float]:
    """Image->text and text->image R@1 / R@5 on held-out pairs (mean of the two directions).

    A retrieved caption counts when its text equals the query image's caption (templated captions
    repeat, and an identical string is as right as the image's own) or belongs to the same image (a
    COCO image's other captions); a retrieved image counts when its caption equals the query or it is
    the query's image. ``model=None``: the chance level, the expected recall of a random
    ranking (:func:`chance_recall_at_k`).
    """
    if model is None:
        captions = [dataset[i].caption for i in spread(len(dataset), limit)]
        sim = None
    else:
        images, texts, captions, _ = _embeddings(model, dataset, collate, limit)
        sim = images @ texts.T  # (N images, N texts)
    index = {c: i for i, c in enumerate(sorted(set(captions)))}
    ids = torch.tensor([index[c] for c in captions])
    images_of = [dataset[i].image_id for i in spread(len(dataset), limit)]
    image_index = {c: i for i, c in enumerate(sorted(set(images_of)))}
    image_ids = torch.tensor([image_index[c] for c in images_of])
    # (N, N) symmetric: the same caption text, or another caption of the same image (COCO has five)
    correct = (ids.unsqueeze(1) == ids.unsqueeze(0)) | (image_ids.unsqueeze(1) == image_ids.unsqueeze(0))
    out = {}
    for k in (1, 5):
        if sim is None:
            out[f"r{k}"] = chance_recall_at_k(correct, k)  # correct is symmetric: both directions alike
        else:
            out[f"r{k}"] = (recall_at_k(sim, correct, k) + recall_at_k(sim.T, correct, k)) / 2
    return out


@torch.no_grad()
def zeroshot_classification(model: nn.Module, dataset: Any, collate: Any, source: str, num_classes: int,
                            tokenizer: Any, *, limit: int | None = None, prompts: int = 8) -> float:
    """CLIP-style: each class's text embedding is the mean over ``prompts`` templated captions of it;
    an image gets the class of the most similar one. Returns top-1 accuracy."""
    images, _, _, labels = _embeddings(model, dataset, collate, limit)
    class_embeddings = []
    for label in range(num_classes):
        texts = sorted({templated_caption(source, label, f"prompt{j}") for j in range(4 * prompts)})
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        emb = model.contrastive(enc["input_ids"], enc["attention_mask"]).text_embeddings.mean(0)
        class_embeddings.append(torch.nn.functional.normalize(emb, dim=0))
    predicted = (images @ torch.stack(class_embeddings).T).argmax(1)
    return (predicted == labels).float().mean().item()


@torch.no_grad()
def image_accuracy(model: nn.Module, dataset: Any, collate: Any, *, limit: int | None = None) -> float:
    """Top-1 accuracy of the image head."""
    hits = total = 0
    for batch in _batches(dataset, collate, 64, limit):
        hits += int((model.classify_image(batch["images"]).logits.argmax(1) == batch["labels"]).sum())
        total += len(batch["labels"])
    return hits / total


@torch.no_grad()
def image_classification_report(model: nn.Module, dataset: Any, collate: Any, label_names: Sequence[str], *,
                                limit: int | None = None) -> tuple[dict[str, float], Any]:
    """Top-1 / top-5 accuracy and macro-F1 of the image head, and its
    :class:`~hybridformer.evaluation.classification.ClassificationReport` (per class, confusion)."""
    from hybridformer.evaluation.classification import classification_report

    logits, labels = [], []
    for batch in _batches(dataset, collate, 64, limit):
        logits.append(model.classify_image(batch["images"]).logits)
        labels.append(batch["labels"])
    scores, truth = torch.cat(logits), torch.cat(labels)  # (N, C), (N,)
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices  # (N, k)
    report = classification_report(truth, top[:, 0], label_names)
    top5 = (top == truth.unsqueeze(1)).any(1).float().mean().item()
    return {"accuracy": report.accuracy, "top5_accuracy": top5, "macro_f1": report.macro_f1}, report


@torch.no_grad()
def video_accuracy(model: nn.Module, dataset: Any, collate: Any, objective: VideoClassificationObjective,
                   *, limit: int | None = None) -> float:
    """Top-1 accuracy of the clip classifier (``objective.label_key`` labels)."""
    hits = total = 0
    for batch in _batches(dataset, collate, 32, limit):
        logits = objective.logits(model, batch["videos"])
        hits += int((logits.argmax(1) == batch[objective.label_key]).sum())
        total += len(logits)
    return hits / total


def _vqa_score(dataset: Any, predictions: dict[int, str], limit: int | None) -> float:
    refs = {e.question_id: list(e.answers) for e in (dataset[i] for i in spread(len(dataset), limit))}
    return vqa_accuracy(predictions, refs).overall


def _question_records(dataset: Any, picks: Sequence[int] | None = None) -> list[tuple[int, str, str]]:
    """(question_id, question, training answer) of examples ``picks`` (None: all) of a VQA split or a
    ``Subset`` of one, read from its records without decoding images (examples when it has none)."""
    picks = range(len(dataset)) if picks is None else picks
    base, index = (dataset.dataset, list(dataset.indices)) if isinstance(dataset, Subset) else (dataset, None)
    if hasattr(base, "questions") and hasattr(base, "annotations"):
        rows = [base.questions[i if index is None else index[i]] for i in picks]
        return [(q["question_id"], q["question"], base.annotations[q["question_id"]]["multiple_choice_answer"])
                for q in rows]
    return [(e.question_id, e.question, e.multiple_choice_answer) for e in (dataset[i] for i in picks)]


def question_answer_pairs(dataset: Any) -> list[tuple[str, str]]:
    """(question, training answer) of every example of a VQA split (or a ``Subset`` of one)."""
    return [(question, answer) for _, question, answer in _question_records(dataset)]


def _questions(dataset: Any, limit: int | None) -> dict[int, str]:
    """question_id -> question text of the examples :func:`_batches` scores."""
    return {qid: question for qid, question, _ in _question_records(dataset, spread(len(dataset), limit))}


@torch.no_grad()
def vqa_classifier_accuracy(model: nn.Module, dataset: Any, collate: Any, answers: Sequence[str],
                            *, limit: int | None = None, allowed: OpeningCandidates | None = None) -> float:
    """VQA accuracy of the answer classifier's argmax; ``model=None``: the majority answer (chance), with
    ``allowed`` the majority answer of each question's opening."""
    predictions: dict[int, str] = {}
    texts = _questions(dataset, limit) if model is None and allowed is not None else {}
    for batch in _batches(dataset, collate, 64, limit):
        if model is None and allowed is not None:
            picked = [allowed.majority(texts[q], answers) for q in batch["question_ids"].tolist()]
        elif model is None:
            picked = [answers[0]] * len(batch["question_ids"])  # answers are sorted by frequency
        else:
            out = model(batch["input_ids"], batch["attention_mask"], images=batch["images"])
            if out.answer_logits is None:
                raise ValueError("vqa.answer: classifier needs an answer head and this model has none "
                                 "(fine-tuned to answer with its decoder); use --vqa.answer rank or generate")
            picked = [answers[i] for i in out.answer_logits.argmax(1).tolist()]
        predictions.update(zip(batch["question_ids"].tolist(), picked))
    return _vqa_score(dataset, predictions, limit)


def generated_answers(sequences: Tensor, eos_token_id: int, tokenizer: Any, max_words: int | None = None) -> list[str]:
    """:func:`extract_answer` of each generated row (B, L), cut at its first ``eos_token_id``."""
    texts = []
    for row in sequences.tolist():
        row = row[:row.index(eos_token_id)] if eos_token_id in row else row
        texts.append(extract_answer(tokenizer.decode(row, skip_special_tokens=True), max_words))
    return texts


def _prompted(collate: Any, fmt: PromptFormat, tokenizer: Any, text: Callable[[Any], str]) -> Callable[[list[Any]], dict]:
    """``collate`` that also adds each example's chat prompt: ``prompt_ids`` / ``prompt_mask`` (B, P),
    the user message ``text(example)`` rendered by ``fmt``, right-padded."""
    def call(examples: list[Any]) -> dict[str, Any]:
        rows = [fmt.prompt_ids(tokenizer, [{"role": "user", "content": text(e)}]) for e in examples]
        ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)  # (B, P)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), True
        return {**collate(examples), "prompt_ids": ids, "prompt_mask": mask, "questions": [text(e) for e in examples]}
    return call


@torch.no_grad()
def vqa_generated_accuracy(model: nn.Module, dataset: Any, collate: Any, tokenizer: Any, *,
                           limit: int | None = None, max_new_tokens: int = 6, max_words: int | None = None,
                           prompt_format: PromptFormat | None = None) -> float:
    """Zero-shot VQA: the question in the model's chat template (``prompt_format``, else the decoder's
    training format ``[CLS] question``) is the decoder's prompt, the image its context; the greedy
    continuation up to [SEP] or punctuation, VQA-normalised, is the answer (:func:`generated_answers`)."""
    fmt = prompt_format or decoder_prompt_format(tokenizer, model.config.decoder)
    predictions: dict[int, str] = {}
    eos = model.config.decoder.eos_token_id
    for batch in _batches(dataset, _prompted(collate, fmt, tokenizer, lambda e: e.question), 64, limit):
        out = model.generate(batch["prompt_ids"], batch["prompt_mask"], images=batch["images"],
                             max_new_tokens=max_new_tokens)
        predictions.update(zip(batch["question_ids"].tolist(), generated_answers(out.sequences, eos, tokenizer, max_words)))
    return _vqa_score(dataset, predictions, limit)


def reference_context(train: Any, collate: Any, k: int) -> dict[str, Tensor]:
    """The images of ``k`` training examples spread evenly over ``train`` (all of them when fewer):
    the reference contexts of PMI ranking, fixed per split so that a test answer never depends on the
    other test questions of its batch."""
    if len(train) == 0:
        raise ValueError("vqa.rank_score: pmi needs training examples for its reference images; the training split is empty")
    return {"images": collate([train[i] for i in spread(len(train), k)])["images"]}  # (K, C, H, W)


@torch.no_grad()
def vqa_ranked_answers(model: nn.Module, dataset: Any, collate: Any, tokenizer: Any, answers: Sequence[str],
                       *, limit: int | None = None, batch_size: int = 64,
                       prompt_format: PromptFormat | None = None, reference: dict[str, Tensor] | None = None,
                       allowed: OpeningCandidates | None = None) -> dict[int, str]:
    """question_id -> answer by ranking: every answer of ``answers`` (the training split's vocabulary,
    most frequent first) is scored by the decoder's log-likelihood of ``answer [SEP]`` after the
    question in the model's chat template (``prompt_format``, else the decoder's training format
    ``[CLS] question``), reading the image (:func:`~hybridformer.models.answer_ranking.candidate_log_likelihoods`);
    with ``reference`` (:func:`reference_context`), by the PMI against those images instead
    (:func:`~hybridformer.models.answer_ranking.candidate_pmi`). With ``allowed``, only the answers
    training gives to questions of the same opening compete. The best one is the answer; ties go to
    the most frequent (:func:`~hybridformer.models.answer_ranking.best_candidates`)."""
    fmt = prompt_format or decoder_prompt_format(tokenizer, model.config.decoder)
    candidates = candidate_ids(tokenizer, answers, model.config.decoder.eos_token_id)
    predictions: dict[int, str] = {}
    for batch in _batches(dataset, _prompted(collate, fmt, tokenizer, lambda e: e.question), batch_size, limit):
        prompts = [row[m] for row, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
        if reference is None:
            scores = candidate_log_likelihoods(model, prompts, candidates, images=batch["images"])  # (B, C)
        else:
            scores = candidate_pmi(model, prompts, candidates, reference, images=batch["images"])  # (B, C)
        if allowed is not None:
            scores = scores.masked_fill(~allowed.mask(batch["questions"], answers), float("-inf"))
        predictions.update(zip(batch["question_ids"].tolist(), [answers[i] for i in best_candidates(scores)]))
    return predictions


def vqa_ranked_accuracy(model: nn.Module, dataset: Any, collate: Any, tokenizer: Any, answers: Sequence[str],
                        *, limit: int | None = None, **kwargs: Any) -> float:
    """VQA accuracy of :func:`vqa_ranked_answers` (``kwargs``: its keyword arguments)."""
    return _vqa_score(dataset, vqa_ranked_answers(model, dataset, collate, tokenizer, answers, limit=limit, **kwargs), limit)


@torch.no_grad()
def caption_bleu4(model: nn.Module, dataset: Any, collate: Any, tokenizer: Any, *, limit: int | None = None,
                  max_new_tokens: int = 12, prompt_format: PromptFormat | None = None) -> float:
    """Corpus BLEU-4 (sacrebleu, default 13a tokenisation) of greedy captions (an image with no text
    in the model's chat template) against each image's caption, divided by 100."""
    import sacrebleu

    fmt = prompt_format or decoder_prompt_format(tokenizer, model.config.decoder)
    hypotheses: list[str] = []
    for batch in _batches(dataset, _prompted(collate, fmt, tokenizer, lambda e: ""), 64, limit):
        out = model.generate(batch["prompt_ids"], batch["prompt_mask"], images=batch["images"],
                             max_new_tokens=max_new_tokens)
        hypotheses += tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
    references = [dataset[i].caption for i in spread(len(dataset), limit)]
    return sacrebleu.corpus_bleu(hypotheses, [references]).score / 100
