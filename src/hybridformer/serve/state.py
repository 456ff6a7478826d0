"""What the routes share (``app.state.serve``): the served models, their batchers, start-up and drain."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hybridformer.serve.batcher import DynamicBatcher, ModelWorker
from hybridformer.serve.config import ServeConfig
from hybridformer.serve.errors import APIError
from hybridformer.serve.metrics import ServeMetrics
from hybridformer.serve.models import ServedModel
from hybridformer.serve.scheduler import ContinuousBatcher

__all__ = ["ServeState"]

log = logging.getLogger("hybridformer.serve")


class ServeState:
    """The models and their batchers, shared by the routes (``app.state.serve``)."""

    def __init__(self, models: list[ServedModel], config: ServeConfig) -> None:
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"--model: two models share a name: {names}; name them with NAME=DIR")
        if not models:
            raise ValueError("--model: give at least one model (a folder or tiny)")
        self.models = {m.name: m for m in models}
        self.config = config
        self.metrics = ServeMetrics()
        self.worker = ModelWorker(self.metrics)
        self.created = int(time.time())
        self.draining = False
        self.classify: dict[str, DynamicBatcher] = {}
        self.embed: dict[str, DynamicBatcher] = {}
        self.chat: dict[str, ContinuousBatcher] = {}
        for m in models:
            if m.classifier is not None:
                self.classify[m.name] = DynamicBatcher(m.name, "classify", m.classifier, config, self.metrics, self.worker)
            if m.embedder is not None:
                self.embed[m.name] = DynamicBatcher(m.name, "embed", m.embedder, config, self.metrics, self.worker)
            if m.generator is not None:
                self.chat[m.name] = ContinuousBatcher(m.name, m.generator, config, self.metrics, self.worker)
        self._tasks: list[asyncio.Task] = []

    def batchers(self) -> list[DynamicBatcher | ContinuousBatcher]:
        return [*self.classify.values(), *self.embed.values(), *self.chat.values()]

    def lookup(self, name: str, table: dict[str, Any], capability: str) -> Any:
        """The batcher of model `name` for an endpoint, or a 404/400 naming what is served."""
        if name not in self.models:
            raise APIError(404, f"model {name!r} does not exist; served: {sorted(self.models)}",
                           param="model", code="model_not_found")
        if name not in table:
            raise APIError(400, f"model {name!r} does not serve {capability} (it serves: "
                           f"{', '.join(self.models[name].capabilities())})", param="model", code="model_not_supported")
        return table[name]

    def start(self) -> None:
        self._tasks = [asyncio.create_task(b.run_forever(), name=f"batcher-{b.name}") for b in self.batchers()]
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def drain(self, timeout: float) -> None:
        """Let queued and running requests finish (up to `timeout` s), then stop the batchers."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(b.idle() for b in self.batchers()):
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.worker.shutdown()


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("batcher %s stopped: %r", task.get_name(), task.exception())
