"""Text generation with the joint decoder: greedy, sampling (temperature, top-k, top-p), beam search.

Prompts are given as a list of 1-D token tensors, or as a padded (B, N) batch with its attention
mask: each row's real tokens, in order, are its prompt, so left- and right-padded batches (or any
padding layout) give the same result as the prompts run one at a time. Every sequence is decoded
at its own position with its own caches (``decoding.py``), so padding never enters the attention.

A sequence stops at ``eos_token_id`` (included in its output) or after ``max_new_tokens``. Finished
sequences leave the running batch at once (the continuous-batching pattern): the others go on alone.

Beam search scores a hypothesis by ``sum(log p) / length ** length_penalty`` with ``length`` the
number of generated tokens (EOS included), as Hugging Face's ``length_penalty`` (> 0 favours longer
outputs, < 0 shorter). It keeps ``num_beams`` unfinished hypotheses per example; a hypothesis that
emits EOS among the top ``num_beams`` candidates joins the finished pool (its best ``num_beams``),
and an example stops as soon as no unfinished hypothesis can still beat the worst of a full pool
(an exact bound, not a heuristic), or at the token limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from hybridformer.config import check
from hybridformer.fusion import CrossModalKV, JointDecoder
from hybridformer.models.decoding import DecodeBatch, prefill

__all__ = ["GenerationConfig", "GenerateOutput", "generate_tokens", "top_k_filter", "top_p_filter", "prompts_of"]


@dataclass
class GenerationConfig:
    """How to pick the next tokens."""

    max_new_tokens: int = 32
    """Most tokens generated per sequence (EOS included)."""
    strategy: Literal["greedy", "sample", "beam"] = "greedy"
    """`greedy`: the most likely token; `sample`: draw from the (filtered) distribution; `beam`: beam search."""
    temperature: float = 1.0
    """Sampling: logits are divided by it before top-k / top-p (lower = sharper)."""
    top_k: int = 0
    """Sampling: keep only the k most likely tokens (exactly k, ties broken by index); 0 = off."""
    top_p: float = 1.0
    """Sampling: keep the smallest set of most likely tokens whose probability reaches top_p; 1 = off."""
    num_beams: int = 4
    """Beam search: unfinished hypotheses kept per example."""
    length_penalty: float = 1.0
    """Beam search: the score is sum(log p) / length ** length_penalty."""
    seed: int | None = None
    """Sampling: seed of the generator (the same seed and inputs give the same text); None = torch's RNG."""
    use_cache: bool = True
    """Decode with the self-attention KV cache and the context keys/values computed once; False
    recomputes the whole decoder at every step (same tokens, for reference and benchmarks)."""

    def __post_init__(self) -> None:
        check(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        check(self.top_k >= 0, "top_k", f"must be >= 0, got {self.top_k}")
        check(0.0 < self.top_p <= 1.0, "top_p", f"must be in (0, 1], got {self.top_p}")
        check(self.num_beams >= 1, "num_beams", f"must be >= 1, got {self.num_beams}")


@dataclass
class GenerateOutput:
    """What generation returns."""

    sequences: Tensor
    """LongTensor (B, L): the generated tokens of each example (prompt excluded), EOS included,
    then ``pad_token_id``; L is the longest output."""
    lengths: Tensor
    """LongTensor (B,): generated tokens per example (EOS included)."""
    scores: Tensor
    """(B,) float: sum of the tokens' log-probabilities (beam search: divided by length ** length_penalty)."""


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Set all but the ``k`` largest logits of each row to -inf (exactly k kept; ties by lower index)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose total probability is >= ``p``.

    A token is dropped when the tokens ranked above it already reach ``p``; the most likely token is
    always kept.
    """
    if p >= 1.0:
        return logits
    order = logits.argsort(dim=-1, descending=True, stable=True)
    probs = torch.softmax(logits.float(), dim=-1).gather(-1, order)
    before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def prompts_of(input_ids: Tensor, attention_mask: Tensor | None) -> list[Tensor]:
    """The prompt of each row of a padded batch: its real tokens in order (any padding side)."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids: expected a (B, N) batch of prompts, got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        return list(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask: expected shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
    return [row[mask.bool()] for row, mask in zip(input_ids, attention_mask)]


def _check_prompts(decoder: JointDecoder, prompts: Sequence[Tensor], max_new: int) -> None:
    limit = decoder.config.max_positions
    for i, prompt in enumerate(prompts):
        if prompt.dim() != 1 or prompt.numel() == 0:
            raise ValueError(f"prompt {i}: expected a non-empty 1-D tensor of token ids, got shape {tuple(prompt.shape)}")
        if prompt.numel() + max_new > limit:
            raise ValueError(
                f"prompt {i}: {prompt.numel()} tokens + max_new_tokens={max_new} exceed the decoder's "
                f"max_positions={limit}; shorten the prompt or ask for fewer tokens"
            )


@torch.no_grad()
def generate_tokens(
    decoder: JointDecoder,
    prompts: Sequence[Tensor],
    kv_rows: Sequence[list[CrossModalKV | None]],
    config: GenerationConfig,
) -> GenerateOutput:
    """Generate a continuation of every prompt.

    Args:
        decoder: the joint decoder (put it in eval mode first).
        prompts: one non-empty 1-D LongTensor per example.
        kv_rows: per example, its per-block cross-attention keys/values (``CrossModalKV.row``).
        config: the :class:`GenerationConfig`.

    Returns:
        :class:`GenerateOutput`.
    """
    _check_prompts(decoder, prompts, config.max_new_tokens)
    states, logits = prefill(decoder, prompts, kv_rows, use_cache=config.use_cache)
    batch = DecodeBatch(decoder, states)
    if config.strategy == "beam":
        outputs = _beam_search(batch, logits, config, decoder.config.eos_token_id)
    else:
        outputs = _sample_or_greedy(batch, logits, config, decoder.config.eos_token_id)
    return _pack(outputs, decoder.config.pad_token_id, logits.device)


def _pick(logits: Tensor, config: GenerationConfig, generator: torch.Generator | None) -> Tensor:
    if config.strategy == "greedy":
        return logits.argmax(dim=-1)
    filtered = top_p_filter(top_k_filter(logits.float() / config.temperature, config.top_k), config.top_p)
    return torch.multinomial(torch.softmax(filtered, dim=-1), 1, generator=generator)[:, 0]


def _sample_or_greedy(
    batch: DecodeBatch, logits: Tensor, config: GenerationConfig, eos: int
) -> list[tuple[list[int], float]]:
    generator = None
    if config.strategy == "sample" and config.seed is not None:
        generator = torch.Generator(device=logits.device).manual_seed(config.seed)
    results: list[tuple[list[int], float]] = [([], 0.0) for _ in range(len(batch))]
    active = list(range(len(batch)))
    for step in range(config.max_new_tokens):
        tokens = _pick(logits, config, generator)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens[:, None])[:, 0]
        going = []
        for j, (example, token) in enumerate(zip(active, tokens.tolist())):
            generated, score = results[example]
            generated.append(token)
            results[example] = (generated, score + float(logp[j]))
            if token != eos:
                going.append(j)
        if not going or step == config.max_new_tokens - 1:
            break
        batch.keep(going)
        active = [active[j] for j in going]
        logits = batch.step(tokens[going])
    return results


def _beam_search(
    batch: DecodeBatch, logits: Tensor, config: GenerationConfig, eos: int
) -> list[tuple[list[int], float]]:
    beams, penalty, limit = config.num_beams, config.length_penalty, config.max_new_tokens
    n_examples = len(batch)
    alive: list[list[tuple[list[int], float]]] = [[([], 0.0)] for _ in range(n_examples)]  # (tokens, sum log p)
    pools: list[list[tuple[float, list[int], float]]] = [[] for _ in range(n_examples)]  # (score, tokens, sum)

    def finish(example: int, tokens: list[int], total: float) -> None:
        pool = pools[example]
        pool.append((total / len(tokens) ** penalty, tokens, total))
        pool.sort(key=lambda h: -h[0])
        del pool[beams:]

    for step in range(limit):
        logp = torch.log_softmax(logits.float(), dim=-1)  # (M, V)
        vocab = logp.shape[-1]
        parents, next_tokens, offset = [], [], 0
        for example in range(n_examples):
            hyps = alive[example]
            if not hyps:
                continue
            sums = torch.tensor([h[1] for h in hyps], device=logp.device)
            candidates = (logp[offset : offset + len(hyps)] + sums[:, None]).flatten()
            top = candidates.topk(min(2 * beams, candidates.numel()))
            chosen = []
            for rank, (total, index) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
                parent, token = divmod(index, vocab)
                tokens = hyps[parent][0] + [token]
                if token == eos:
                    if rank < beams:
                        finish(example, tokens, total)
                    continue
                chosen.append((parent, tokens, total))
                if len(chosen) == beams:
                    break
            if step == limit - 1:
                for _, tokens, total in chosen:
                    finish(example, tokens, total)
                chosen = []
            elif len(pools[example]) == beams and chosen:
                # The best an unfinished hypothesis can still reach (log p only falls, length grows).
                length = limit if penalty > 0 else step + 2
                best = max(total for _, _, total in chosen) / length**penalty
                if best <= pools[example][-1][0]:
                    chosen = []
            alive[example] = [(tokens, total) for _, tokens, total in chosen]
            parents += [offset + parent for parent, _, _ in chosen]
            next_tokens += [tokens[-1] for _, tokens, _ in chosen]
            offset += len(hyps)
        if not parents:
            break
        batch.keep(parents)
        logits = batch.step(torch.tensor(next_tokens, device=logits.device))
    return [(pool[0][1], pool[0][0]) for pool in pools]


def _pack(outputs: list[tuple[list[int], float]], pad: int, device: torch.device) -> GenerateOutput:
    lengths = [len(tokens) for tokens, _ in outputs]
    sequences = torch.full((len(outputs), max(lengths)), pad, dtype=torch.long)
    for i, (tokens, _) in enumerate(outputs):
        sequences[i, : len(tokens)] = torch.tensor(tokens)
    scores = torch.tensor([score for _, score in outputs], dtype=torch.float32)
    return GenerateOutput(sequences.to(device), torch.tensor(lengths, device=device), scores.to(device))
