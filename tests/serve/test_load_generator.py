"""benchmarks/_serving.py against a real server: the load generator's counts agree with the server's
own metrics, malformed requests are counted apart by status, and model-busy time is read back."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _serving  # noqa: E402

MALFORMED = [b'{"model": "clf", "input": ', b'{"model": "nope", "input": "x"}']


def test_load_counts_good_and_malformed_requests_as_the_server_does(server):
    bodies = [json.dumps({"model": "clf", "input": t}).encode() for t in ("a fine film", "dull", "so-so at best")]
    before = _serving.server_stats(server.url)
    result = asyncio.run(_serving.load(server.url, "/v1/classify", 4, bodies, 20, 30.0, MALFORMED, malformed_every=5,
                                       on_start=lambda: "started"))
    after = _serving.server_stats(server.url)
    assert result["at_start"] == "started"
    assert result["errors"] == 0 and len(result["latencies_ms"]) == 16  # 20 sent, every 5th malformed
    assert result["malformed_statuses"] == {400: 2, 404: 2}
    # The server ran every good input once: 16 counted + one uncounted warm-up per client, no malformed one.
    assert after["classify_sum"] - before.get("classify_sum", 0.0) == 16 + 4
    assert after["busy_s"] > before["busy_s"]
    assert result["throughput"] == len(result["latencies_ms"]) / result["elapsed_s"]
    assert _serving.percentile(sorted(result["latencies_ms"]), 0.99) == max(result["latencies_ms"])


def test_the_minimal_client_reads_content_length_and_chunked_answers_on_one_connection(server):
    async def go() -> list[tuple[int, bytes]]:
        c = _serving.Connection(server.url)
        try:
            plain = await c.post("/v1/classify", json.dumps({"model": "clf", "input": "a fine film"}).encode())
            chat = {"model": "tiny", "max_tokens": 4, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            stream = await c.post("/v1/chat/completions", json.dumps(chat).encode())  # server-sent events: chunked
            bad = await c.post("/v1/classify", b'{"model": ')
            return [plain, stream, bad]
        finally:
            await c.close()

    (s1, plain), (s2, stream), (s3, bad) = asyncio.run(go())
    assert s1 == 200 and json.loads(plain)["data"][0]["object"] == "classification"
    assert s2 == 200 and stream.rstrip().endswith(b"data: [DONE]") and stream.startswith(b"data: ")
    assert s3 == 400 and json.loads(bad)["error"]["code"] == "invalid_json"


def test_the_minimal_client_talks_to_this_machine_only():
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        _serving.Connection("http://example.com:80")
