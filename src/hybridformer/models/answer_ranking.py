"""Answer ranking: score every candidate answer by the decoder's log-likelihood given the prompt and context.

The standard remedy when a generative decoder will not stop captioning (BLIP's ``rank_answer``, LAVIS's
rank-based VQA, multiple choice by log-likelihood): instead of decoding, compute for each question and
each candidate ``a_1 .. a_m`` of the answer vocabulary

    log p(a_1 .. a_m [eos] | prompt, image) = sum_t log p(a_t | prompt, image, a_<t)

and answer with the best candidate. The context and the prompt are run once per question
(:meth:`MultimodalModel.prefill`); the candidates then share that prefilled state (forked, never
copied) and are scored together, one decoder step per candidate token for all of them at once
(:class:`~hybridformer.models.decoding.DecodeBatch`), so a vocabulary of single-token answers costs one
prefill per question and one batched step.

A caption-trained decoder's likelihood is dominated by its language prior: some answers are likely
after any question whatever the image shows. :func:`candidate_pmi` removes that prior (the
"domain-conditional PMI" of Holtzman et al. 2021, *Surface Form Competition*, with the question as the
domain premise): each candidate's log-likelihood given the example's own context minus its
log-likelihood with the context marginalised over K reference examples (e.g. training images),

    pmi(a) = log p(a | prompt, image) - log mean_k p(a | prompt, image_k)

so an answer wins by being more likely *for this image* than for images in general. A model whose
cross-attention gates are exactly 0 (never trained) gives every candidate the same score 0:
:func:`best_candidates` breaks such ties towards the first candidate (callers list the most frequent
answer first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["candidate_ids", "candidate_log_likelihoods", "reference_log_likelihoods", "candidate_pmi",
           "best_candidates"]


def candidate_ids(tokenizer: Any, answers: Sequence[str], eos_token_id: int | None) -> list[list[int]]:
    """The token ids of each answer (no special tokens), followed by ``eos_token_id`` unless it is None.

    With the end token, a candidate is scored as a whole answer: "yes" and "yes please" are told apart
    by whether the decoder would stop after "yes".

    Raises:
        ValueError: an answer that tokenizes to nothing.
    """
    out = []
    for answer in answers:
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"answers: {answer!r} tokenizes to no token")
        out.append(list(ids) + ([] if eos_token_id is None else [eos_token_id]))
    return out


@torch.no_grad()
def candidate_log_likelihoods(
    model: Any,
    prompts: Sequence[Tensor],
    candidates: Sequence[Sequence[int]],
    *,
    max_members: int = 4096,
    **context: Tensor | None,
) -> Tensor:
    """Summed log-probability of every candidate continuation of every prompt (call ``model.eval()`` first).

    Args:
        model: a :class:`~hybridformer.models.MultimodalModel` (anything with ``prefill`` and ``decode_batch``).
        prompts: one non-empty 1-D LongTensor per example (e.g. ``[CLS] question``, no [SEP]).
        candidates: C token-id lists (e.g. :func:`candidate_ids`), scored after every prompt.
        max_members: decode at most this many (example, candidate) pairs in one batch.
        **context: the examples' context (``images``, ``image_mask``, ... as in ``encode_context``).

    Returns:
        (B, C) float32: ``log p(candidate c | prompt b, context b)``.
    """
    if not candidates or any(len(c) == 0 for c in candidates):
        raise ValueError("candidates: give at least one candidate, each with at least one token")
    states, first = model.prefill(prompts, **context)  # first: (B, V) logits of each prompt's next token
    n_cand, longest = len(candidates), max(len(c) for c in candidates)
    device = first.device
    padded = torch.zeros(n_cand, longest, dtype=torch.long, device=device)  # (C, L); 0 where a candidate ended
    real = torch.zeros(n_cand, longest, dtype=torch.bool, device=device)
    for c, ids in enumerate(candidates):
        padded[c, :len(ids)] = torch.tensor(ids, device=device)
        real[c, :len(ids)] = True
    scores = first.float().log_softmax(-1)[:, padded[:, 0]]  # (B, C): the first token of every candidate
    if longest == 1:
        return scores
    pairs = [(b, c) for b in range(len(states)) for c in range(n_cand)]
    for start in range(0, len(pairs), max_members):
        chunk = pairs[start:start + max_members]
        rows = torch.tensor([b for b, _ in chunk], device=device)
        cols = torch.tensor([c for _, c in chunk], device=device)
        batch = model.decode_batch([states[b].fork() for b, _ in chunk])
        total = torch.zeros(len(chunk), device=device)
        for t in range(longest - 1):
            # feed token t, score token t+1 where the candidate has one (ended ones feed padding: ignored)
            logp = batch.step(padded[cols, t]).float().log_softmax(-1)  # (M, V)
            picked = logp.gather(1, padded[cols, t + 1][:, None])[:, 0]
            total += torch.where(real[cols, t + 1], picked, torch.zeros_like(picked))
        scores[rows, cols] += total
    return scores


def _log_mean_exp(x: Tensor, dim: int) -> Tensor:
    """``log mean exp`` over ``dim`` with the maximum factored out: K equal values give exactly that
    value back (no ``+ log K - log K`` rounding), so an untrained model's equal scores stay tied."""
    top = x.max(dim).values
    return top + (x - top.unsqueeze(dim)).exp().mean(dim).log()


@torch.no_grad()
def reference_log_likelihoods(
    model: Any,
    prompts: Sequence[Tensor],
    candidates: Sequence[Sequence[int]],
    reference: Mapping[str, Tensor],
    *,
    max_members: int = 4096,
) -> Tensor:
    """``log mean_k p(candidate c | prompt b, reference context k)``: (B, C) float32, the candidates'
    likelihood after each prompt with the context marginalised over the K reference examples.

    It depends on the prompt alone, so a prompt repeated in the batch (VQA asks the same questions of
    many images) is scored once: K prefills per distinct prompt.

    Args:
        reference: the K reference examples' context (e.g. ``{"images": (K, C, H, W)}``), given to
            every prompt in turn.
    """
    sizes = {name: len(t) for name, t in reference.items()}
    if not sizes or min(sizes.values()) == 0 or len(set(sizes.values())) > 1:
        raise ValueError(f"reference: give K >= 1 reference examples of every context input, got sizes {sizes}")
    distinct: dict[tuple[int, ...], int] = {}
    row = [distinct.setdefault(tuple(p.tolist()), len(distinct)) for p in prompts]  # prompt b -> its distinct row
    unique = [torch.tensor(key, dtype=torch.long, device=prompts[0].device) for key in distinct]
    per_reference = [  # each (U, C): reference k as the context of every distinct prompt
        candidate_log_likelihoods(model, unique, candidates, max_members=max_members,
                                  **{name: t[k:k + 1].expand(len(unique), *t.shape[1:]) for name, t in reference.items()})
        for k in range(next(iter(sizes.values())))
    ]
    marginal = _log_mean_exp(torch.stack(per_reference, 1), dim=1)  # (U, K, C) -> (U, C)
    return marginal[torch.tensor(row, device=marginal.device)]  # (B, C)


@torch.no_grad()
def candidate_pmi(
    model: Any,
    prompts: Sequence[Tensor],
    candidates: Sequence[Sequence[int]],
    reference: Mapping[str, Tensor],
    *,
    max_members: int = 4096,
    **context: Tensor | None,
) -> Tensor:
    """(B, C) ``log p(c | prompt b, context b) - log mean_k p(c | prompt b, reference k)``: how much more
    likely each candidate is given the example's own context than given the reference contexts
    (:func:`candidate_log_likelihoods` minus :func:`reference_log_likelihoods`)."""
    own = candidate_log_likelihoods(model, prompts, candidates, max_members=max_members, **context)
    return own - reference_log_likelihoods(model, prompts, candidates, reference, max_members=max_members)


def best_candidates(scores: Tensor, tolerance: float = 1e-4) -> list[int]:
    """The best candidate of each row of ``scores`` (B, C); scores within ``tolerance`` of the row's best
    count as tied and the tie goes to the lowest index (list the most frequent answer first)."""
    best = scores.max(1, keepdim=True).values  # (B, 1)
    return (scores >= best - tolerance).int().argmax(1).tolist()  # argmax returns the first maximum
