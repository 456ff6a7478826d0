"""The bounded request queue of one model: admission control, nothing about batching.

Lives on the event loop (no locks): handlers put requests, the model's batcher takes them. Over
capacity a put raises :class:`~.errors.QueueFullError` (429 with Retry-After), so memory stays
bounded however many clients push.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hybridformer.serve.errors import QueueFullError

__all__ = ["QueuedRequest", "RequestQueue"]


@dataclass(eq=False)
class QueuedRequest:
    """What every queued request carries."""

    arrival: float = field(default_factory=time.monotonic, init=False)
    """time.monotonic() when it was queued (max wait and latency count from here)."""
    _cancelled: bool = field(default=False, init=False, repr=False)

    @property
    def cancelled(self) -> bool:
        """The client went away or timed out: drop it wherever it is."""
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True


R = TypeVar("R", bound=QueuedRequest)


class RequestQueue(Generic[R]):
    """FIFO of waiting requests, at most `capacity` long.

    Args:
        model: the model's name (for the 429 message).
        capacity: most waiting requests.
        retry_after_s: what the 429 tells clients to wait.
    """

    def __init__(self, model: str, capacity: int, retry_after_s: int) -> None:
        self.model = model
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self._items: list[R] = []
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, requests: list[R]) -> None:
        """Queue all of `requests` (one client request's inputs) or none.

        Raises:
            QueueFullError: they do not all fit.
        """
        if len(self.waiting()) + len(requests) > self.capacity:  # cancelled ones hold no place
            raise QueueFullError(self.model, self.capacity, self.retry_after_s)
        self._items.extend(requests)
        self._changed.set()

    def waiting(self) -> list[R]:
        """The live waiting requests, oldest first (cancelled ones are dropped here)."""
        if any(r.cancelled for r in self._items):
            self._items = [r for r in self._items if not r.cancelled]
        return list(self._items)

    def take(self, requests: list[R]) -> None:
        """Remove `requests` (now being run) from the queue."""
        taken = set(map(id, requests))
        self._items = [r for r in self._items if id(r) not in taken]

    async def wait(self, timeout: float | None = None) -> None:
        """Return when a request was put (or after `timeout` seconds)."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
