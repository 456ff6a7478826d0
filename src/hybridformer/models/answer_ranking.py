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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["candidate_ids", "candidate_log_likelihoods"]


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
