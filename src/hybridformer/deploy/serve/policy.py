"""The batching policy of one-shot encoders: which waiting inputs run together, and when.

A pure function of the waiting list and the clock, so it is tested without threads or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

__all__ = ["BatchPolicy", "Sized"]


class Sized(Protocol):
    arrival: float
    """time.monotonic() of arrival."""
    length: int
    """Tokens of the input."""


@dataclass
class BatchPolicy:
    """Gather up to `max_batch_size` inputs / `max_batch_tokens` padded tokens of one length bucket,
    or whatever arrived within `max_wait_s` of the oldest input.

    The oldest waiting input picks the bucket, so no input waits behind younger ones of another
    bucket for more than a batch. Padded tokens are batch size x the longest input.
    """

    max_batch_size: int
    """Most inputs in a batch."""
    max_batch_tokens: int
    """Most padded tokens in a batch (one input is always allowed, however long)."""
    max_wait_s: float
    """Longest time the oldest input waits for the batch to fill."""
    bucket_of: Callable[[int], int]
    """Length (tokens) -> bucket index."""

    def next_batch(self, waiting: Sequence[Sized], now: float) -> list[Sized] | float:
        """The batch to run now, or how many seconds to wait before asking again.

        Args:
            waiting: live waiting inputs, oldest first (non-empty).
            now: the current time.monotonic().
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
        due = oldest.arrival + self.max_wait_s
        if full or now >= due:
            return batch
        return due - now
