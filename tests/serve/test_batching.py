"""Batching on the real server: concurrent requests share forwards and decoding steps, and what a
request gets in a batch equals what the model gives it alone."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import torch
import torch.nn.functional as F

from hybridformer.serve.engine import Prompt
from hybridformer.serve.sampling import SamplingParams, sample
from serve_helpers import metric, start_server

TEXTS = [
    "the film was wonderful",
    "a dull and lifeless plot that goes nowhere at all, for two long hours",
    "ok",
    "the actors did what they could with a script that nobody should have greenlit",
    "great",
    "i would watch it again tomorrow",
]


async def _concurrent(url: str, path: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        return list(await asyncio.gather(*(c.post(path, json=b) for b in bodies)))


def _batch_sizes(url: str, model: str, kind: str) -> tuple[float, float]:
    """(count, sum) of the batch-size histogram of one model and kind."""
    samples = {s[0]: s[2] for s in metric(url, "hybridformer_batch_size", model=model, kind=kind)}
    return samples.get("hybridformer_batch_size_count", 0.0), samples.get("hybridformer_batch_size_sum", 0.0)


def _busy_seconds(url: str) -> float:
    return sum(v for name, _, v in metric(url, "hybridformer_model_busy_seconds") if name.endswith("_total"))


def _assert_classified_as_alone(clf, responses: list[httpx.Response]) -> None:
    for text, r in zip(TEXTS, responses):
        assert r.status_code == 200, r.text
        got = r.json()["data"][0]
        ids = torch.tensor([clf.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            alone = torch.softmax(clf.model(ids).logits, -1)[0]  # the model on this text, unpadded
        served = torch.tensor([got["probabilities"][name] for name in clf.label_names])
        torch.testing.assert_close(served, alone, atol=1e-5, rtol=1e-4)
        assert got["label"] == clf.label_names[int(alone.argmax())]


def test_concurrent_classify_requests_share_forwards_and_match_the_model_alone(server, models):
    before = _batch_sizes(server.url, "clf", "classify")
    responses = asyncio.run(_concurrent(server.url, "/v1/classify", [{"model": "clf", "input": t} for t in TEXTS]))
    count, total = (a - b for a, b in zip(_batch_sizes(server.url, "clf", "classify"), before))
    assert total == len(TEXTS)
    assert count < len(TEXTS), "no two concurrent requests shared a forward"
    _assert_classified_as_alone(models[0].classifier, responses)


def test_back_to_back_batches_each_answer_their_own_inputs(models):
    """With batches of 2, six concurrent inputs run as consecutive forwards: the next batch starts
    while the previous one's answers are being scattered, and none gets another's result. (The
    issue's first-arrival rule, so the first input waits for a partner rather than running alone.)"""
    with start_server(models[:1], max_batch_size=2, max_wait_ms=50.0, batch_wait="first-arrival") as s:
        start, busy_before = time.perf_counter(), _busy_seconds(s.url)
        responses = asyncio.run(_concurrent(s.url, "/v1/classify", [{"model": "clf", "input": t} for t in TEXTS]))
        wall = time.perf_counter() - start
        count, total = _batch_sizes(s.url, "clf", "classify")
        spent = _busy_seconds(s.url) - busy_before
    assert (count, total) == (3, len(TEXTS))
    _assert_classified_as_alone(models[0].classifier, responses)
    assert 0 < spent <= wall, "the model-busy counter must count the model thread's time, within the wall time"


def test_embeddings_of_a_padded_batch_equal_sentence_transformers_mean_pooling(client, models):
    encoder = models[1].embedder.model
    tok = models[1].embedder.tokenizer
    r = client.post("/v1/embeddings", json={"model": "minilm", "input": TEXTS})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["index"] for d in data] == list(range(len(TEXTS)))
    for text, d in zip(TEXTS, data):
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            alone = F.normalize(encoder(ids).last_hidden_state.mean(1), dim=-1)[0]  # no padding: plain mean
        torch.testing.assert_close(torch.tensor(d["embedding"]), alone, atol=1e-5, rtol=1e-4)


def _greedy_alone(generator, prompt: Prompt, n: int) -> list[int]:
    state, logits = generator.prefill([prompt])
    out = []
    for _ in range(n):
        token = sample(logits, [SamplingParams(temperature=0.0)])
        if int(token) in generator.eos_token_ids:
            break
        out.append(int(token))
        logits = generator.step(state, token)
    return out


def test_generation_is_continuously_batched_and_matches_decoding_alone(server, models):
    gen = models[2].generator
    prompts = ["hello", "tell me a long story about the sea and the wind", "why", "one two three four five"]
    lengths = [12, 5, 20, 9]  # different lengths: sequences leave while others go on
    bodies = [{"model": "tiny", "messages": [{"role": "user", "content": p}], "max_tokens": n, "temperature": 0}
              for p, n in zip(prompts, lengths)]
    before = _batch_sizes(server.url, "tiny", "decode")
    responses = asyncio.run(_concurrent(server.url, "/v1/chat/completions", bodies))
    count, total = (a - b for a, b in zip(_batch_sizes(server.url, "tiny", "decode"), before))
    assert count > 0 and total / count > 1.0, "decoding steps never ran more than one sequence"
    for p, n, r in zip(prompts, lengths, responses):
        assert r.status_code == 200, r.text
        body = r.json()
        expected = _greedy_alone(gen, gen.chat_prompt([("user", p)], []), n)
        assert body["choices"][0]["message"]["content"] == gen.detokenize(expected)
        assert body["usage"]["completion_tokens"] == len(expected)
        assert body["choices"][0]["finish_reason"] == ("length" if len(expected) == n else "stop")


def test_encoder_engine_tokenizes_as_the_hugging_face_tokenizer(models):
    engine = models[0].classifier
    texts = [*TEXTS, "héllo, wörld! 1234 ...", "word " * 600]
    got = engine.encode(texts)
    want = engine.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=engine.max_tokens + 1)
    assert got[:-1] == [list(ids) for ids in want["input_ids"][:-1]]
    assert len(got[-1]) == len(want["input_ids"][-1]) == engine.max_tokens + 1  # too long shows (then gets 400)


@pytest.mark.parametrize("rule", ["idle-aware", "model-free"])
def test_every_batch_wait_rule_batches_concurrent_requests_and_answers_each_its_own(models, rule):
    with start_server(models[:1], max_batch_size=2, max_wait_ms=50.0, batch_wait=rule) as s:
        responses = asyncio.run(_concurrent(s.url, "/v1/classify", [{"model": "clf", "input": t} for t in TEXTS]))
        count, total = _batch_sizes(s.url, "clf", "classify")
    assert total == len(TEXTS) and count < len(TEXTS)
    _assert_classified_as_alone(models[0].classifier, responses)


def test_a_lone_request_on_an_idle_server_does_not_wait_for_company(models):
    """idle-aware (the default) runs a request that finds the model idle at once; first-arrival
    holds it the whole max wait."""
    for rule, at_least, under in (("idle-aware", 0.0, 1.0), ("first-arrival", 1.0, 30.0)):
        with start_server(models[:1], max_wait_ms=1000.0, batch_wait=rule) as s:
            start = time.perf_counter()
            r = httpx.post(s.url + "/v1/classify", json={"model": "clf", "input": "a quiet film"}, timeout=30)
            took = time.perf_counter() - start
        assert r.status_code == 200 and at_least <= took < under, (rule, took)
