"""Progress over a long loop (scoring a test split, classifying a data set): a tqdm bar on a terminal;
when stderr is piped (a log file, CI), a plain ``what: 3/8 batches (38%) | elapsed 0:00:12, ETA 0:00:20``
line on the ``hybridformer.recipes`` logger (the CLI prints it on stderr) each time ``every`` seconds
have passed, and at the end of a loop that printed one, so short loops stay quiet. The training loop's
own progress is :class:`~hybridformer.training.logging.RunLogger`'s; a run's phases are announced with
:func:`~hybridformer.recipes.summary.announce`.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["track"]

_log = logging.getLogger("hybridformer.recipes")
T = TypeVar("T")


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def track(items: Iterable[T], total: int, what: str, *, unit: str = "batches", every: float = 15.0) -> Iterator[T]:
    """Yield ``items`` (``total`` of them) while showing progress as the module docstring says.

    Args:
        items: what the loop goes over.
        total: how many there are (for the percentage and the ETA).
        what: the loop's name on the bar and in the lines (``scoring 500 test examples``).
        unit: what an item is, plural.
        every: seconds between plain lines when stderr is not a terminal.
    """
    bar = tqdm(total=total, desc=what, unit=unit.rstrip("s") or unit, dynamic_ncols=True, disable=None, leave=False)
    started = time.perf_counter()
    printed_at, printed = started, False
    try:
        for done, item in enumerate(items, 1):
            yield item
            bar.update(1)
            if not bar.disable:
                continue
            now = time.perf_counter()
            if now - printed_at >= every or (printed and done == total):
                printed_at, printed = now, True
                elapsed = now - started
                _log.info(f"{what}: {done}/{total} {unit} ({100 * done / max(total, 1):.0f}%) | "
                          f"elapsed {_clock(elapsed)}, ETA {_clock(elapsed / done * (total - done))}")
    finally:
        bar.close()
