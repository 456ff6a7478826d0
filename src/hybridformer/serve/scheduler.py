"""Continuous batching of generation: sequences join and leave the running batch between steps.

Each iteration of the loop, on the model worker thread:

1. running sequences whose client left are dropped (:meth:`Generator.select`);
2. the running batch takes one decoding step (:meth:`Generator.step`) and samples a token per row;
3. waiting requests, as many as free slots (``max_running``) and the prefill token budget allow,
   are prefilled together (:meth:`Generator.prefill`), sample their first token, and join the
   batch (:meth:`Generator.concat`);
4. finished rows (end token, ``max_tokens``, a stop string, the context limit) leave.

Text deltas, ends and errors go back to each request's event queue on the event loop. A prefill
that raises is retried prompt by prompt, so one bad prompt fails alone. A decoding step that raises
leaves the shared state unusable: the sequences in it fail, the server and the queue go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from hybridformer.serve.batcher import ModelWorker, as_api_error, run_isolated
from hybridformer.serve.config import ServeConfig
from hybridformer.serve.engine import Generator, Prompt
from hybridformer.serve.errors import APIError
from hybridformer.serve.metrics import ServeMetrics
from hybridformer.serve.queue import QueuedRequest, RequestQueue
from hybridformer.serve.sampling import SamplingParams, sample

__all__ = ["ContinuousBatcher", "GenerationRequest", "Delta", "Finished"]

log = logging.getLogger("hybridformer.serve")


@dataclass
class Delta:
    """New text of a sequence."""

    text: str


@dataclass
class Finished:
    """A sequence ended."""

    reason: str
    """OpenAI's finish_reason: ``stop`` (end token or stop string) or ``length``."""
    text: str
    """The whole generated text."""
    prompt_tokens: int
    completion_tokens: int


@dataclass(eq=False)
class GenerationRequest(QueuedRequest):
    """One chat completion in the queue or the running batch."""

    prompt: Prompt = field(default_factory=lambda: Prompt([]))
    params: SamplingParams = field(default_factory=SamplingParams)
    max_new_tokens: int = 16
    """Most tokens to generate."""
    stop: list[str] = field(default_factory=list)
    """Strings that end the answer (not included in it)."""
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    """Delta, then Finished or APIError; at most max_new_tokens + 1 events."""
    generated: list[int] = field(default_factory=list)
    sent: str = ""
    """Text already sent as deltas."""


@dataclass
class _Iteration:
    state: Any
    running: list[GenerationRequest]
    events: list[tuple[GenerationRequest, Delta | Finished | APIError]]
    stepped: int
    prefilled: int
    first_tokens: list[GenerationRequest]


class ContinuousBatcher:
    """Schedules the generation requests of one :class:`Generator`.

    Args:
        name: the served model's name.
        generator: the model execution.
        config: max_running, max_batch_tokens (prefill budget), queue capacity.
        metrics: queue depth, running sequences, batch sizes, TTFT, tokens/s.
        worker: the model thread.
    """

    def __init__(
        self, name: str, generator: Generator, config: ServeConfig, metrics: ServeMetrics, worker: ModelWorker
    ) -> None:
        self.name, self.generator, self.config = name, generator, config
        self.metrics, self.worker = metrics, worker
        self.queue: RequestQueue[GenerationRequest] = RequestQueue(name, config.max_queue, config.retry_after_s)
        self.running: list[GenerationRequest] = []
        self._state: Any = None

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; read its ``events``. Raises QueueFullError when the queue is full."""
        self.queue.put([request])
        self.metrics.queue_depth.labels(self.name).set(len(self.queue))

    def idle(self) -> bool:
        return not self.running and not self.queue.waiting()

    async def run_forever(self) -> None:
        """The scheduling loop (a task for the server's lifetime)."""
        while True:
            waiting = self.queue.waiting()
            if not self.running and not waiting:
                self.metrics.queue_depth.labels(self.name).set(0)
                await self.queue.wait()
                continue
            admitted = self._admit(waiting)
            self.queue.take(admitted)
            self.metrics.queue_depth.labels(self.name).set(len(self.queue))
            it = await self.worker.run(self._iterate, self._state, list(self.running), admitted)
            self._state, self.running = it.state, it.running
            self._record(it)
            for request, event in it.events:
                request.events.put_nowait(event)

    def _admit(self, waiting: list[GenerationRequest]) -> list[GenerationRequest]:
        """The oldest waiting requests that fit the free slots and the prefill token budget."""
        free = self.config.max_running - len(self.running)
        admitted: list[GenerationRequest] = []
        longest = 0
        for request in waiting[: max(free, 0)]:
            length = self.generator.prompt_length(request.prompt)
            if admitted and (len(admitted) + 1) * max(longest, length) > self.config.max_batch_tokens:
                break
            admitted.append(request)
            longest = max(longest, length)
        return admitted

    def _record(self, it: _Iteration) -> None:
        m, now = self.metrics, time.monotonic()
        if it.stepped:
            m.batch_size.labels(self.name, "decode").observe(it.stepped)
        if it.prefilled:
            m.batch_size.labels(self.name, "prefill").observe(it.prefilled)
        for request in it.first_tokens:
            m.ttft.labels(self.name).observe(now - request.arrival)
        if it.stepped + it.prefilled:
            m.add_tokens(self.name, it.stepped + it.prefilled)
        m.running.labels(self.name).set(len(it.running))

    # ---- the worker-thread side: model calls and per-row bookkeeping ----

    def _iterate(
        self, state: Any, running: list[GenerationRequest], admitted: list[GenerationRequest]
    ) -> _Iteration:
        gen = self.generator
        events: list[tuple[GenerationRequest, Delta | Finished | APIError]] = []
        live = [i for i, r in enumerate(running) if not r.cancelled]
        if len(live) < len(running):
            state = gen.select(state, live) if live else None
            running = [running[i] for i in live]
        rows: list[GenerationRequest] = []
        states, tokens = [], []
        stepped = 0
        if running:
            try:
                logits = gen.step(state, torch.tensor([r.generated[-1] for r in running], dtype=torch.long))
                tokens.append(sample(logits, [r.params for r in running]))
                states.append(state)
                rows += running
                stepped = len(running)
            except Exception as err:  # the shared state is unusable: its sequences fail, nothing else
                log.exception("decoding step failed for %d sequences", len(running))
                events += [(r, as_api_error(err)) for r in running]
        prefilled = 0
        if admitted:
            outcomes = run_isolated(self._prefill, admitted)
            for request, outcome in zip(admitted, outcomes):
                if isinstance(outcome, BaseException):
                    events.append((request, as_api_error(outcome)))
                else:
                    states.append(outcome[0])
                    tokens.append(outcome[1])
                    rows.append(request)
                    prefilled += 1
        if not rows:
            return _Iteration(None, [], events, stepped, prefilled, [])
        state = gen.concat(states) if len(states) > 1 else states[0]
        next_tokens = torch.cat(tokens).tolist()
        first = [r for r in rows if not r.generated]
        keep: list[int] = []
        for i, (request, token) in enumerate(zip(rows, next_tokens)):
            event = self._advance(request, token)
            if event is not None:
                events.append((request, event))
            if not isinstance(event, Finished):
                keep.append(i)
        if len(keep) < len(rows):
            state = gen.select(state, keep) if keep else None
            rows = [rows[i] for i in keep]
        return _Iteration(state, rows, events, stepped, prefilled, first)

    def _prefill(self, requests: list[GenerationRequest]) -> list[tuple[Any, torch.Tensor]]:
        """Prefill a group together; per request its own row's state and first token."""
        state, logits = self.generator.prefill([r.prompt for r in requests])
        first = sample(logits, [r.params for r in requests])
        if len(requests) == 1:
            return [(state, first)]
        # One state per request keeps run_isolated's contract; concat rejoins them at once.
        return [(self.generator.select(state, [i]), first[i : i + 1]) for i in range(len(requests))]

    def _advance(self, request: GenerationRequest, token: int) -> Delta | Finished | None:
        """Take a sampled token: the new text to send, the end of the sequence, or nothing yet."""
        gen = self.generator
        prompt_tokens = gen.prompt_length(request.prompt)
        if token in gen.eos_token_ids:
            return self._finish(request, "stop", prompt_tokens)
        request.generated.append(token)
        text = gen.detokenize(request.generated)
        for stop in request.stop:
            at = text.find(stop)
            if at >= 0:
                return self._finish(request, "stop", prompt_tokens, text[:at])
        if len(request.generated) >= request.max_new_tokens or prompt_tokens + len(request.generated) >= gen.max_context:
            return self._finish(request, "length", prompt_tokens, text)
        # Hold back what could be the start of a stop string.
        safe = len(text) - max((len(s) - 1 for s in request.stop), default=0)
        if safe > len(request.sent) and text.startswith(request.sent):
            delta, request.sent = text[len(request.sent):safe], text[:safe]
            return Delta(delta)
        return None

    def _finish(self, request: GenerationRequest, reason: str, prompt_tokens: int, text: str | None = None) -> Finished:
        if text is None:
            text = self.generator.detokenize(request.generated)
        return Finished(reason, text, prompt_tokens, len(request.generated))
