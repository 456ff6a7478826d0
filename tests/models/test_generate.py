"""Generation: cached equals uncached, beam search equals exhaustive search, seeded sampling, filters."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hybridformer.models.decoding import DecodeBatch, prefill
from hybridformer.models.generate import (
    GenerationConfig,
    generate_tokens,
    prompts_of,
    top_k_filter,
    top_p_filter,
)
from tiny_decoders import mixed_context, tiny_decoder

PROMPTS = [torch.tensor([1, 5, 6]), torch.tensor([1]), torch.tensor([1, 7, 8, 9, 10, 11])]


def _rows(decoder):
    kv = decoder.cross_kv(mixed_context())
    return [[layer.row(i) for layer in kv] for i in range(3)]


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
# pooled / compressed: beams fork their selection's state, which the layer updates in place
@pytest.mark.parametrize("kind", ["hybrid", "pooled", "compressed", "full"])
def test_cached_generation_equals_uncached_token_for_token(strategy, kind):
    decoder = tiny_decoder(kind)
    rows = _rows(decoder)
    config = dict(max_new_tokens=12, strategy=strategy, num_beams=3)
    cached = generate_tokens(decoder, PROMPTS, rows, GenerationConfig(**config, use_cache=True))
    uncached = generate_tokens(decoder, PROMPTS, rows, GenerationConfig(**config, use_cache=False))
    assert torch.equal(cached.sequences, uncached.sequences)
    assert torch.equal(cached.lengths, uncached.lengths)
    torch.testing.assert_close(cached.scores, uncached.scores, atol=1e-4, rtol=1e-5)


def test_a_batch_equals_each_prompt_alone_and_padding_side_does_not_matter():
    decoder = tiny_decoder()
    rows = _rows(decoder)
    config = GenerationConfig(max_new_tokens=8)
    batched = generate_tokens(decoder, PROMPTS, rows, config)
    for i in range(3):
        alone = generate_tokens(decoder, PROMPTS[i : i + 1], rows[i : i + 1], config)
        assert alone.sequences[0].tolist() == batched.sequences[i, : alone.lengths[0]].tolist()
    n = max(len(p) for p in PROMPTS)
    right = torch.zeros(3, n, dtype=torch.long)
    left = torch.zeros(3, n, dtype=torch.long)
    right_mask = torch.zeros(3, n, dtype=torch.bool)
    left_mask = torch.zeros(3, n, dtype=torch.bool)
    for i, p in enumerate(PROMPTS):
        right[i, : len(p)], right_mask[i, : len(p)] = p, True
        left[i, n - len(p) :], left_mask[i, n - len(p) :] = p, True
    for ids, mask in ((right, right_mask), (left, left_mask)):
        out = generate_tokens(decoder, prompts_of(ids, mask), rows, config)
        assert torch.equal(out.sequences, batched.sequences)


def _sequence_logprob(decoder, prompt, kv, tokens):
    ids = torch.cat([prompt, torch.tensor(tokens)])[None]
    with torch.no_grad():
        logp = torch.log_softmax(decoder(ids, kv=kv).logits[0].double(), dim=-1)
    n = len(prompt)
    return sum(float(logp[n - 1 + t, token]) for t, token in enumerate(tokens))


@pytest.mark.parametrize("length_penalty", [1.0, 0.0, -0.5])
def test_beam_search_keeping_every_hypothesis_equals_exhaustive_search(length_penalty):
    vocab, limit, eos = 4, 3, 2
    decoder = tiny_decoder(vocab_size=vocab, eos_token_id=eos, pad_token_id=0, bos_token_id=1)
    prompt = torch.tensor([1, 3])
    kv = [layer.row(1) for layer in decoder.cross_kv({
        k: v for k, v in mixed_context().items() if k != "video"})]
    best, best_tokens = -math.inf, None
    for length in range(1, limit + 1):
        for tokens in itertools.product(range(vocab), repeat=length):
            if eos in tokens[:-1] or (length < limit and tokens[-1] != eos):
                continue  # a hypothesis ends at its first EOS, or at the limit
            score = _sequence_logprob(decoder, prompt, kv, list(tokens)) / length**length_penalty
            if score > best:
                best, best_tokens = score, list(tokens)
    config = GenerationConfig(max_new_tokens=limit, strategy="beam", num_beams=vocab**limit,
                              length_penalty=length_penalty)
    out = generate_tokens(decoder, [prompt], [kv], config)
    assert out.sequences[0, : out.lengths[0]].tolist() == best_tokens
    assert abs(float(out.scores[0]) - best) < 1e-4


def test_a_seeded_sample_is_reproducible():
    decoder = tiny_decoder()
    rows = _rows(decoder)
    config = dict(max_new_tokens=10, strategy="sample", temperature=1.5, top_k=20, top_p=0.95)
    first = generate_tokens(decoder, PROMPTS, rows, GenerationConfig(**config, seed=7))
    again = generate_tokens(decoder, PROMPTS, rows, GenerationConfig(**config, seed=7))
    other = generate_tokens(decoder, PROMPTS, rows, GenerationConfig(**config, seed=8))
    assert torch.equal(first.sequences, again.sequences)
    assert not torch.equal(first.sequences, other.sequences)


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.0, 2.0, 0.0]])
    kept = torch.isfinite(top_k_filter(logits, 3))[0].tolist()
    assert kept == [False, True, False, True, True, False]
    tie = torch.isfinite(top_k_filter(logits, 2))[0].tolist()
    assert sum(tie) == 2 and tie[1]  # exactly k, even with a tie at the boundary


def test_top_p_keeps_the_smallest_nucleus_reaching_p():
    probs = torch.tensor([[0.0625, 0.5, 0.125, 0.25, 0.0625]])
    logits = probs.log()
    # sorted: 0.5, 0.25, 0.125, 0.0625, 0.0625 -> cumulative 0.5, 0.75, 0.875, ...
    assert torch.isfinite(top_p_filter(logits, 0.7))[0].tolist() == [False, True, False, True, False]
    assert torch.isfinite(top_p_filter(logits, 0.8))[0].tolist() == [False, True, True, True, False]
    assert torch.isfinite(top_p_filter(logits, 0.4))[0].tolist() == [False, True, False, False, False]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()
    filtered = top_p_filter(logits, 0.7)
    torch.testing.assert_close(torch.softmax(filtered, -1)[0, [1, 3]], torch.tensor([2 / 3, 1 / 3]))


def test_a_sequence_can_join_a_running_batch():
    """Continuous batching: prefill a new prompt and add it between steps; each matches its solo run."""
    decoder = tiny_decoder()
    rows = _rows(decoder)
    solo = [generate_tokens(decoder, [p], [r], GenerationConfig(max_new_tokens=6)).sequences[0]
            for p, r in zip(PROMPTS, rows)]
    with torch.no_grad():
        states, logits = prefill(decoder, PROMPTS[:2], rows[:2])
        batch = DecodeBatch(decoder, states)
        got = [[], [], []]
        members = [0, 1]
        for step in range(8):
            tokens = logits.argmax(-1)
            for m, t in zip(members, tokens.tolist()):
                got[m].append(t)
            logits = batch.step(tokens)
            if step == 1:
                (state,), first = prefill(decoder, PROMPTS[2:], rows[2:])
                batch.add(state)
                members.append(2)
                logits = torch.cat([logits, first])
    for i in range(3):
        n = min(len(solo[i]), len(got[i]))
        assert got[i][:n] == solo[i][:n].tolist()


def test_a_prompt_too_long_is_a_clear_error():
    decoder = tiny_decoder()
    with pytest.raises(ValueError, match="prompt 0: 90 tokens"):
        generate_tokens(decoder, [torch.ones(90, dtype=torch.long)], [[None, None]], GenerationConfig(max_new_tokens=10))
