"""The batching policy of one-shot encoders: which waiting inputs run together, and when.

A pure function of the waiting list, the clock and how the model's last forward ended, so it is
tested on hand-worked timelines without threads or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol, Sequence

__all__ = ["BatchPolicy", "LastForward", "Sized"]


class Sized(Protocol):
    arrival: float
    """time.monotonic() of arrival."""
    length: int
    """Tokens of the input."""


@dataclass(frozen=True)
class LastForward:
    """How the model's most recent forward (of this batcher) ended."""

    end: float
    """time.monotonic() when it returned (the model became free)."""
    size: int
    """Inputs it ran."""
    waiting: int
    """Inputs waiting when it returned."""

    @property
    def busy(self) -> bool:
        """The model was shared: the forward had company, or inputs were queued behind it."""
        return self.size > 1 or self.waiting > 0


@dataclass
class BatchPolicy:
    """Gather up to `max_batch_size` inputs / `max_batch_tokens` padded tokens of one length bucket;
    a batch that is not full runs when its wait is over.

    When the wait is over (`wait_from`):

    - ``first-arrival``: `max_wait_s` after the oldest waiting input arrived.
    - ``idle-aware``: the same, except on an idle model (nothing ran yet, or the last forward ran
      one input with nothing waiting behind it): then at once. A lone request on a quiet server
      does not wait for company that is not coming; under load it is ``first-arrival``.
    - ``model-free``: at once on an idle model, else `max_wait_s` after the model became free
      (the end of the last forward): the model idles at most `max_wait_s` for a batch to fill. A
      saturated server then waits for the clients its last batch just answered, instead of
      running the half that was already waiting alone (closed-loop clients otherwise settle into
      two cohorts that alternate on the model, each half a batch).

    While at most a batch is waiting, an input waits at most for the forward running when it
    arrives and `max_wait_s`: after that forward (``model-free``), or overlapping it (the others).

    The oldest waiting input picks the bucket, so no input waits behind younger ones of another
    bucket for more than a batch. Padded tokens are batch size x the longest input.
    """

    max_batch_size: int
    """Most inputs in a batch."""
    max_batch_tokens: int
    """Most padded tokens in a batch (one input is always allowed, however long)."""
    max_wait_s: float
    """Longest time a batch that is not full waits to fill."""
    bucket_of: Callable[[int], int]
    """Length (tokens) -> bucket index."""
    wait_from: Literal["idle-aware", "model-free", "first-arrival"]
    """What the wait counts from (see the class docstring)."""

    def next_batch(self, waiting: Sequence[Sized], now: float, last: LastForward | None = None) -> list[Sized] | float:
        """The batch to run now, or how many seconds to wait before asking again.

        Args:
            waiting: live waiting inputs, oldest first (non-empty).
            now: the current time.monotonic(); the model is free.
            last: how the model's last forward ended (None: none has run yet).
        """
        oldest = waiting[0]
        bucket = self.bucket_of(oldest.length)
        batch: list[Sized] = []
        longest = 0
        full = False
        for item in waiting:
            if self.bucket_of(item.length) != bucket:
                continue
            new_longest = max(longest, item.length)
            if batch and (len(batch) + 1) * new_longest > self.max_batch_tokens:
                full = True
                break
            batch.append(item)
            longest = new_longest
            if len(batch) == self.max_batch_size:
                full = True
                break
        # Nothing more can join when one more input of the current longest would pass the budget.
        full = full or (len(batch) + 1) * longest > self.max_batch_tokens
        due = self.due(oldest.arrival, last)
        if full or now >= due:
            return batch
        return due - now

    def due(self, oldest_arrival: float, last: LastForward | None) -> float:
        """When a batch that is not full runs (time.monotonic())."""
        if self.wait_from == "first-arrival":
            return oldest_arrival + self.max_wait_s
        if last is None or not last.busy:
            return oldest_arrival  # an idle model: run at once
        if self.wait_from == "idle-aware":
            return oldest_arrival + self.max_wait_s
        return last.end + self.max_wait_s
