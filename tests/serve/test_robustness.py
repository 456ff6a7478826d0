"""Overload, timeouts, failing inputs inside a batch, clients that leave mid-stream, graceful drain."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx

from hybridformer.serve.engine import EncoderEngine
from hybridformer.serve.models import ServedModel
from tiny_lm import TinyGenerator
from serve_helpers import assert_openai_error, metric, start_server

# Fault injection: the real models, made to fail on inputs holding the word "poison" (a model bug
# that one input triggers). The server under test is not modified.


class FragileEngine(EncoderEngine):
    def run(self, batch):
        if any(self.tokenizer.convert_tokens_to_ids("poison") in row for row in batch):
            raise RuntimeError("this input breaks the model")
        return super().run(batch)


class FragileGenerator(TinyGenerator):
    def prefill(self, prompts):
        if any(self.tokenizer.convert_tokens_to_ids("poison") in p.token_ids for p in prompts):
            raise RuntimeError("this prompt breaks the model")
        return super().prefill(prompts)


def test_overload_gets_429_with_retry_after_never_500_or_a_hang(models):
    with start_server(models, max_queue=3, max_batch_size=1, retry_after_s=2) as s:
        async def flood():
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as c:
                return await asyncio.gather(*(c.post("/v1/classify", json={"model": "clf", "input": f"text {i}"})
                                              for i in range(40)))

        start = time.monotonic()
        responses = asyncio.run(flood())
        assert time.monotonic() - start < 60
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(429) > 0 and statuses.count(200) >= 3
        rejected = next(r for r in responses if r.status_code == 429)
        assert rejected.headers["retry-after"] == "2"
        assert_openai_error(rejected, 429, "rate_limit_exceeded")
        assert httpx.get(s.url + "/health").status_code == 200


def test_a_request_that_times_out_gets_504_and_leaves_the_queue(models):
    # first-arrival holds a lone request for the max wait (3 s), past its 0.3 s timeout.
    with start_server(models, max_wait_ms=3000, batch_wait="first-arrival", request_timeout_s=0.3) as s:
        r = httpx.post(s.url + "/v1/classify", json={"model": "clf", "input": "slow"}, timeout=30)
        assert_openai_error(r, 504, "timeout")
        assert metric(s.url, "hybridformer_queue_depth", model="clf")[0][2] == 0


def test_a_failing_input_fails_alone_and_its_batch_mates_succeed(models):
    clf = models[0].classifier
    fragile = FragileEngine(clf.model, clf.tokenizer, "classify", max_tokens=clf.max_tokens,
                            label_names=clf.label_names)
    gen = FragileGenerator(models[2].generator.tokenizer)
    served = [ServedModel("fragile", classifier=fragile), ServedModel("fragile-lm", generator=gen)]
    # first-arrival: the five inputs wait together for the 200 ms, so the poison one shares their batch.
    with start_server(served, max_wait_ms=200, batch_wait="first-arrival") as s:
        async def mixed():
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as c:
                good = [c.post("/v1/classify", json={"model": "fragile", "input": f"good text {i}"}) for i in range(4)]
                bad = c.post("/v1/classify", json={"model": "fragile", "input": "a poison text"})
                chats = [c.post("/v1/chat/completions", json={
                    "model": "fragile-lm", "max_tokens": 5, "messages": [{"role": "user", "content": text}]})
                    for text in ("hello", "some poison here", "bye")]
                return await asyncio.gather(bad, *good, *chats)

        bad, *rest = asyncio.run(mixed())
        good, chats = rest[:4], rest[4:]
        assert_openai_error(bad, 500)
        assert all(r.status_code == 200 for r in good), [r.text for r in good]
        sizes = {x[0]: x[2] for x in metric(s.url, "hybridformer_batch_size", model="fragile")}
        assert sizes["hybridformer_batch_size_count"] < 5, "the five inputs never shared a forward"
        assert [r.status_code for r in chats] == [200, 500, 200], [r.text for r in chats]
        assert httpx.get(s.url + "/health").json()["status"] == "ok"


def _generated(url: str) -> float:
    samples = metric(url, "hybridformer_generated_tokens", model="tiny")
    return sum(value for name, _, value in samples if name.endswith("_total"))


def test_a_client_that_disconnects_mid_stream_frees_its_slot(models):
    with start_server(models, max_running=1, max_new_tokens=1000) as s:
        before = _generated(s.url)
        body = {"model": "tiny", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 1000,
                "stream": True}
        with httpx.Client(base_url=s.url, timeout=60) as c:
            with c.stream("POST", "/v1/chat/completions", json=body) as r:
                lines = r.iter_lines()
                assert next(lines).startswith("data: ")
                next(lines)
            # the connection is closed: the one slot must come free for the next request
            start = time.monotonic()
            r = c.post("/v1/chat/completions", json={**body, "max_tokens": 3, "stream": False})
        assert r.status_code == 200, r.text
        assert _generated(s.url) - before < 1000, "the abandoned sequence ran to its end"
        assert time.monotonic() - start < 30


def test_a_sequence_joins_the_running_batch_without_waiting_for_it(models):
    with start_server(models, max_running=4, max_new_tokens=800) as s:
        done = threading.Event()

        def long_stream():
            body = {"model": "tiny", "messages": [{"role": "user", "content": "long"}], "max_tokens": 800,
                    "stream": True, "temperature": 0}
            with httpx.stream("POST", s.url + "/v1/chat/completions", json=body, timeout=60) as r:
                for _ in r.iter_lines():
                    pass
            done.set()

        thread = threading.Thread(target=long_stream)
        thread.start()
        while _generated(s.url) < 5:
            time.sleep(0.01)
        r = httpx.post(s.url + "/v1/chat/completions", timeout=60, json={
            "model": "tiny", "messages": [{"role": "user", "content": "short"}], "max_tokens": 3})
        assert r.status_code == 200
        assert not done.is_set(), "the short request waited for the long one to finish"
        thread.join(60)


def test_shutdown_drains_in_flight_requests(models):
    s = start_server(models, max_new_tokens=400)
    result = {}

    def request():
        body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 400, "temperature": 0}
        result["response"] = httpx.post(s.url + "/v1/chat/completions", json=body, timeout=60)

    thread = threading.Thread(target=request)
    thread.start()
    while _generated(s.url) < 1:
        time.sleep(0.01)
    s.stop()  # what SIGTERM does: stop accepting, finish what is in flight, then exit
    thread.join(60)
    assert not s.thread.is_alive()
    r = result["response"]
    assert r.status_code == 200, r.text
    body = json.loads(r.text)
    assert body["usage"]["completion_tokens"] == 400 or body["choices"][0]["finish_reason"] == "stop"
