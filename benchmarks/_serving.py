"""Helpers of benchmarks/serving.py: the server subprocess, its metrics, the asyncio load generator.

Traffic goes to 127.0.0.1 only. The load generator is closed-loop: each of C clients sends its next
request when its last one is answered, until a request count or a time limit. Its HTTP client is
a minimal HTTP/1.1 one over asyncio streams (the tests use httpx and the openai client).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["HOST", "Connection", "Server", "load", "percentile", "run", "server_stats"]

SRC = Path(__file__).resolve().parents[1] / "src"
HOST = "127.0.0.1"  # traffic goes to this machine only


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``hybridformer serve --model SPEC FLAGS...`` in a subprocess (the client does not share its GIL)."""

    def __init__(self, model: str, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hybridformer", "serve", "--model", model, "--host", HOST, "--port", str(self.port),
             *flags],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def __enter__(self) -> Server:
        return self.wait()

    def wait(self) -> Server:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in 120 s")

    def cpu_s(self) -> float:
        """CPU seconds (user + system, every thread) the server process has used."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def server_stats(url: str) -> dict[str, float]:
    """Totals from the server's /metrics: model-busy and model-CPU seconds, and per batch kind its count and sum."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {"busy_s": 0.0}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for s in family.samples:
            if s.name == "hybridformer_model_busy_seconds_total":
                out["busy_s"] += s.value
            elif s.name == "hybridformer_model_cpu_seconds_total":
                out["model_cpu_s"] = out.get("model_cpu_s", 0.0) + s.value
            elif s.name in ("hybridformer_batch_size_count", "hybridformer_batch_size_sum"):
                key = f"{s.labels['kind']}_{s.name.rsplit('_', 1)[1]}"
                out[key] = out.get(key, 0.0) + s.value
    return out


def percentile(sorted_ms: list[float], q: float) -> float | None:
    """The q-quantile of an ascending list (None when empty)."""
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


class HTTPError(Exception):
    """The server broke HTTP/1.1 framing or closed the connection mid-answer."""


class Connection:
    """One HTTP/1.1 keep-alive connection to 127.0.0.1 over asyncio streams: POST a body, read the answer.

    A few hundred microseconds of client CPU per request, where httpx's AsyncClient costs ~1-2 ms,
    so the load generator (on the server's own cores) leaves the CPU to the server it measures.
    Understands Content-Length and chunked answers; reconnects when the server closes.
    """

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        if host != HOST:
            raise ValueError(f"the load generator talks to {HOST} only, got {url}")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
        """(status, body) of ``POST path`` with a JSON `body`."""
        return await asyncio.wait_for(self._post(path, body), timeout)

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            await self.close()
            raise HTTPError(f"connection closed before the answer: {err!r}") from None
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = (line.partition(":") for line in lines[1:] if line)
        headers = {k.strip().lower(): v.strip() for k, _, v in fields}
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size + 2))
            await self.reader.readuntil(b"\r\n")
            content = b"".join(p[:-2] for p in parts)
        else:
            raise HTTPError(f"answer {status} has neither content-length nor chunked encoding")
        if headers.get("connection") == "close":
            await self.close()
        return status, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass
        self.reader = self.writer = None


def run(coro: Any) -> Any:
    """``asyncio.run(coro)``, on uvloop when it is installed (less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def load(url: str, path: str, concurrency: int, bodies: list[bytes], max_requests: int, max_seconds: float,
               malformed: list[bytes] | None = None, malformed_every: int = 0,
               on_start: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Closed-loop load on `path`: `concurrency` clients until `max_requests` answers or `max_seconds`.

    Each client holds one keep-alive :class:`Connection`. Each client's first request (its
    connection's set-up) is not counted, and the window starts when every client has had its first
    answer (``on_start()`` is called then; its value is returned as ``at_start``). Every
    `malformed_every`-th request sends one of `malformed` instead (its status is counted, not its
    latency). Returns throughput (good answers / s), their latencies, completion tokens (from
    ``usage``, chat only), errors (good requests not answered 200) by kind, malformed statuses.
    """
    latencies: list[float] = []
    tokens = 0
    errors = 0
    error_kinds: dict[str, int] = {}
    bad_statuses: dict[int, int] = {}
    sent = 0
    warm = 0
    started = asyncio.Event()
    clock: dict[str, Any] = {"start": 0.0, "stop_at": 0.0}

    async def client(c: Connection, worker: int) -> None:
        nonlocal errors, sent, tokens, warm
        rng = random.Random(worker)
        # One uncounted request per client opens its connection; the window starts when all have.
        await c.post(path, bodies[worker % len(bodies)])
        warm += 1
        if warm == concurrency:
            clock["at_start"] = on_start() if on_start is not None else None
            clock["start"] = time.perf_counter()
            clock["stop_at"] = time.monotonic() + max_seconds
            started.set()
        await started.wait()
        while sent < max_requests and time.monotonic() < clock["stop_at"]:
            sent += 1
            bad = bool(malformed_every) and sent % malformed_every == 0
            content = malformed[(sent // malformed_every) % len(malformed)] if bad else bodies[rng.randrange(len(bodies))]
            start = time.perf_counter()
            try:
                status, answer = await c.post(path, content)
                kind = str(status)
            except (OSError, HTTPError, asyncio.TimeoutError) as err:
                answer, status, kind = b"", -1, type(err).__name__
                await c.close()
            if bad:
                bad_statuses[status] = bad_statuses.get(status, 0) + 1
            elif status == 200:
                latencies.append(time.perf_counter() - start)
                if "chat" in path:
                    tokens += json.loads(answer)["usage"]["completion_tokens"]
            else:
                errors += 1
                error_kinds[kind] = error_kinds.get(kind, 0) + 1

    clients = [Connection(url) for _ in range(concurrency)]
    try:
        await asyncio.gather(*(client(c, w) for w, c in enumerate(clients)))
        elapsed = time.perf_counter() - clock["start"]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return {"throughput": len(latencies) / elapsed, "tokens_per_s": tokens / elapsed, "elapsed_s": elapsed,
            "latencies_ms": [x * 1e3 for x in latencies], "errors": errors, "error_kinds": error_kinds,
            "malformed_statuses": bad_statuses, "at_start": clock.get("at_start")}
