"""Dynamic batching of one-shot encoder requests: queue -> policy -> one forward in the worker -> scatter.

Each input of a request is one queued item with a future; the batcher's loop asks the
:class:`~.policy.BatchPolicy` for the next batch, runs :meth:`EncoderEngine.run` on the model worker
thread (the event loop keeps serving while the model runs) and sets each item's future. When a
batch's forward raises, its inputs are run one by one so only the failing input fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from torch import Tensor

from hybridformer.serve.config import ServeConfig
from hybridformer.serve.engine import EncoderEngine
from hybridformer.serve.errors import APIError
from hybridformer.serve.metrics import ServeMetrics
from hybridformer.serve.policy import BatchPolicy, LastForward
from hybridformer.serve.queue import QueuedRequest, RequestQueue

__all__ = ["DynamicBatcher", "ModelWorker", "EncodeItem", "run_isolated", "as_api_error"]

log = logging.getLogger("hybridformer.serve")
T = TypeVar("T")


class ModelWorker:
    """The one thread that runs models: calls are serialised, torch's intra-op pool does the parallelism."""

    def __init__(self, metrics: ServeMetrics | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybridformer-model")
        self._metrics = metrics

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, fn, *args)

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, its time added to the model-busy counter (busy / wall = the model's utilisation)
        and its thread's CPU time to the model-CPU one (with torch_threads 1, busy minus CPU is time
        the thread stood runnable: waiting for the GIL or for a core)."""
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            if self._metrics is not None:
                self._metrics.model_busy.inc(time.perf_counter() - start)
                self._metrics.model_cpu.inc(time.thread_time() - cpu)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


def as_api_error(err: BaseException) -> APIError:
    """An exception from the model as the client sees it: ValueError is the input's fault (400)."""
    if isinstance(err, APIError):
        return err
    if isinstance(err, ValueError):
        return APIError(400, f"the model rejected the input: {err}")
    return APIError(500, f"the model failed on this input: {type(err).__name__}: {err}", type="server_error")


def run_isolated(fn: Callable[[list[Any]], list[T]], inputs: list[Any]) -> list[T | BaseException]:
    """``fn(inputs)``; if it raises, ``fn([x])`` for each input, so one bad input fails alone."""
    try:
        return list(fn(inputs))
    except Exception as err:  # the batch failed: find out which inputs did it
        if len(inputs) == 1:
            log.warning("model call failed: %s: %s", type(err).__name__, err)
            return [err]
    out: list[T | BaseException] = []
    for x in inputs:
        try:
            out.append(fn([x])[0])
        except Exception as err:
            log.warning("model call failed on one input: %s: %s", type(err).__name__, err)
            out.append(err)
    return out


@dataclass(eq=False)
class EncodeItem(QueuedRequest):
    """One input waiting for an encoder forward."""

    ids: list[int] = field(default_factory=list)
    """Its token ids."""
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]
    """Resolved with the input's result tensor (or an exception)."""

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def cancelled(self) -> bool:
        """Its future is done before the batch ran: the request timed out or its client left."""
        return self.future.done()


class DynamicBatcher:
    """Batches the inputs of one encoder engine.

    Args:
        name: the served model's name (queue, metrics).
        task: ``classify`` or ``embed`` (metrics label).
        engine: the model execution.
        config: batch size, tokens, wait, buckets, queue capacity.
        metrics: where queue depth, running inputs and batch sizes go.
        worker: the model thread.
    """

    def __init__(
        self, name: str, task: str, engine: EncoderEngine, config: ServeConfig, metrics: ServeMetrics,
        worker: ModelWorker,
    ) -> None:
        self.name, self.task, self.engine = name, task, engine
        self.metrics, self.worker = metrics, worker
        self.queue: RequestQueue[EncodeItem] = RequestQueue(name, config.max_queue, config.retry_after_s)
        self.policy = BatchPolicy(
            config.max_batch_size, config.max_batch_tokens, config.max_wait_ms / 1e3, config.bucket_of,
            config.batch_wait,
        )
        self.in_flight = 0
        self.last: LastForward | None = None
        """How the last forward ended (the policy's model-free wait counts from it)."""

    def submit(self, inputs: list[list[int]]) -> list[asyncio.Future]:
        """Queue a request's inputs; their futures resolve to result tensors.

        Raises:
            QueueFullError: the queue cannot take them all (nothing is queued).
        """
        loop = asyncio.get_running_loop()
        items = [EncodeItem(ids=ids, future=loop.create_future()) for ids in inputs]
        self.queue.put(items)
        self.metrics.queue_depth.labels(self.name).set(len(self.queue))
        return [item.future for item in items]

    def forget_cancelled(self) -> None:
        """Drop cancelled inputs from the queue now (not when the loop next wakes)."""
        self.metrics.queue_depth.labels(self.name).set(len(self.queue.waiting()))

    async def run_forever(self) -> None:
        """The batching loop (a task for the server's lifetime).

        When a forward returns, the next due batch goes to the model thread before this one's
        results are scattered, so the model does not sit idle while the event loop answers.
        """
        running: tuple[list[EncodeItem], asyncio.Future] | None = None
        while True:
            if running is None:
                batch = await self._next_batch()
                running = batch, self._start(batch)
            batch, results = running[0], await running[1]
            waiting = self.queue.waiting()
            now = time.monotonic()
            self.last = LastForward(end=now, size=len(batch), waiting=len(waiting))
            decision = self.policy.next_batch(waiting, now, self.last) if waiting else None
            running = (decision, self._start(decision)) if isinstance(decision, list) else None
            self._scatter(batch, results)

    async def _next_batch(self) -> list[EncodeItem]:
        """Wait until the policy releases a batch; take it out of the queue."""
        while True:
            waiting = self.queue.waiting()
            self.metrics.queue_depth.labels(self.name).set(len(waiting))
            if not waiting:
                await self.queue.wait()
                continue
            decision = self.policy.next_batch(waiting, time.monotonic(), self.last)
            if isinstance(decision, float):
                await self.queue.wait(decision)  # a new arrival may fill the batch before the deadline
                continue
            return decision

    def _start(self, batch: list[EncodeItem]) -> asyncio.Future:
        """Take `batch` out of the queue and run its forward on the model thread (a future of its results)."""
        self.queue.take(batch)
        self.metrics.queue_depth.labels(self.name).set(len(self.queue))
        self.metrics.batch_size.labels(self.name, self.task).observe(len(batch))
        self.in_flight += len(batch)
        self.metrics.running.labels(self.name).inc(len(batch))
        return asyncio.ensure_future(self.worker.run(run_isolated, self.engine.run, [item.ids for item in batch]))

    def _scatter(self, batch: list[EncodeItem], results: list[Tensor | BaseException]) -> None:
        """Resolve each input's future with its result (or its error)."""
        self.metrics.running.labels(self.name).dec(len(batch))
        self.in_flight -= len(batch)
        for item, result in zip(batch, results):
            if item.future.done():  # timed out or cancelled meanwhile
                continue
            if isinstance(result, Tensor):
                item.future.set_result(result)
            else:
                item.future.set_exception(as_api_error(result))

    def idle(self) -> bool:
        """Nothing waiting or running."""
        return not self.queue.waiting() and self.in_flight == 0
