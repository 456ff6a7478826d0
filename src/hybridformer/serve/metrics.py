"""Prometheus metrics of one server (its own registry, so several servers can live in one process)."""

from __future__ import annotations

import collections
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    """The server's gauges, counters and histograms, exported by ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("hybridformer_queue_depth", "Requests waiting, per model", ["model"], registry=r)
        self.running = Gauge(
            "hybridformer_running_requests", "Inputs in the model now (batch or decoding), per model", ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "hybridformer_batch_size", "Inputs per model forward (encoders) or decoding step", ["model", "kind"],
            buckets=_BATCH_BUCKETS, registry=r,
        )
        self.requests = Counter(
            "hybridformer_requests", "HTTP requests answered, per endpoint and status", ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "hybridformer_request_latency_seconds", "Time from request to the end of its response", ["endpoint"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.ttft = Histogram(
            "hybridformer_time_to_first_token_seconds", "Time from a chat request to its first token", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.tokens = Counter("hybridformer_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.tokens_per_s = Gauge(
            "hybridformer_tokens_per_second", "Tokens generated per second over the last 10 s", ["model"], registry=r
        )
        self.model_busy = Counter(
            "hybridformer_model_busy_seconds", "Time the model worker thread spent running model calls", registry=r
        )
        self.model_cpu = Counter(
            "hybridformer_model_cpu_seconds",
            "CPU time of the model worker thread in model calls (busy minus this: waiting for the GIL or a core)",
            registry=r,
        )
        self._recent: dict[str, collections.deque[tuple[float, int]]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def add_tokens(self, model: str, count: int) -> None:
        """Count `count` generated tokens and update the tokens/s gauge (10 s window)."""
        now = time.monotonic()
        self.tokens.labels(model).inc(count)
        with self._lock:
            recent = self._recent[model]
            recent.append((now, count))
            while recent and recent[0][0] < now - 10.0:
                recent.popleft()
            span = max(now - recent[0][0], 1.0)
            self.tokens_per_s.labels(model).set(sum(c for _, c in recent) / span)

    def export(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
