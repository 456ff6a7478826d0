"""The tiny Generator's contract: rows do not depend on their batch, select/concat keep each row's
state, and sampling follows temperature and top-p."""

from __future__ import annotations

import pytest
import torch

from hybridformer.data import minilm_tokenizer
from hybridformer.serve.sampling import SamplingParams, sample
from tiny_lm import TinyGenerator


@pytest.fixture(scope="module")
def gen():
    return TinyGenerator(minilm_tokenizer(), dtype=torch.float64)


def test_prefill_and_steps_of_a_padded_batch_equal_each_prompt_alone(gen):
    prompts = [gen.chat_prompt([("user", t)], []) for t in ("hi", "a much longer prompt than the first", "ok then")]
    prompts[1].images.append(torch.rand(3, 20, 30, dtype=torch.float64))
    state, logits = gen.prefill(prompts)
    tokens = torch.tensor([5000, 6000, 7000])
    nxt = gen.step(state, tokens)
    for i, p in enumerate(prompts):
        s1, l1 = gen.prefill([p])
        torch.testing.assert_close(logits[i : i + 1], l1, atol=1e-10, rtol=0)
        torch.testing.assert_close(nxt[i : i + 1], gen.step(s1, tokens[i : i + 1]), atol=1e-10, rtol=0)


def test_the_image_reaches_the_model(gen):
    red, blue = torch.zeros(3, 8, 8, dtype=torch.float64), torch.zeros(3, 8, 8, dtype=torch.float64)
    red[0], blue[2] = 1.0, 1.0
    logits = [gen.prefill([gen.chat_prompt([("user", "describe")], [img])])[1] for img in (red, blue)]
    assert (logits[0] - logits[1]).abs().max() > 1e-3
    assert gen.prompt_length(gen.chat_prompt([("user", "x")], [red])) == gen.prompt_length(
        gen.chat_prompt([("user", "x")], [])) + 16  # 16 patch positions


def test_select_and_concat_keep_each_rows_state(gen):
    a = gen.chat_prompt([("user", "first")], [])
    b = gen.chat_prompt([("user", "second, a bit longer")], [])
    sa, _ = gen.prefill([a])
    for t in (11, 12, 13):  # a is three tokens ahead when b joins
        gen.step(sa, torch.tensor([t]))
    sb, _ = gen.prefill([b])
    joined = gen.concat([sa, sb])
    out = gen.step(joined, torch.tensor([14, 21]))
    alone_a, _ = gen.prefill([a])
    for t in (11, 12, 13):
        gen.step(alone_a, torch.tensor([t]))
    torch.testing.assert_close(out[:1], gen.step(alone_a, torch.tensor([14])), atol=1e-10, rtol=0)
    only_b = gen.select(joined, [1])  # a leaves; b's cache drops the columns only a used
    assert only_b.caches[0].keys.shape[2] == len(b.token_ids) + 1
    alone_b, _ = gen.prefill([b])
    gen.step(alone_b, torch.tensor([21]))
    torch.testing.assert_close(gen.step(only_b, torch.tensor([22])), gen.step(alone_b, torch.tensor([22])),
                               atol=1e-10, rtol=0)


def test_sampling_greedy_top_p_and_seed():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 2))
    assert sample(logits, [SamplingParams(temperature=0.0)] * 2).tolist() == [0, 0]
    # top_p=0.7 keeps {0, 1} (0.5 < 0.7, 0.5 + 0.3 >= 0.7): tokens 2 and 3 never appear
    draws = [int(sample(logits[:1], [SamplingParams(top_p=0.7, seed=s)])[0]) for s in range(200)]
    assert set(draws) == {0, 1}
    assert 0.5 < draws.count(0) / 200 < 0.75  # 0.5 / 0.8 = 0.625
    seeded = [int(sample(logits[:1], [SamplingParams(seed=3)])[0]) for _ in range(5)]
    assert len(set(seeded)) == 1
