"""benchmarks/_serving.py against a real server: the load generator's counts agree with the server's
own metrics, malformed requests are counted apart by status, and model-busy time is read back."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

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
