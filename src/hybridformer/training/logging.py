"""Run logging: a JSON-lines record, TensorBoard scalars and a tqdm progress bar, behind one object.

``<out_dir>/log.jsonl`` gets one JSON object per logged step (``{"step": 10, "loss": ..., "lr": ...,
"tokens_per_s": ...}``) and per evaluation (keys prefixed ``eval/``). On resume, records past the
resumed step (written by the interrupted run after its last checkpoint) are dropped, so the file
reads as one clean run. On a terminal a tqdm bar shows loss, tokens/s and ETA; when stderr is not a
terminal (a log file, CI, nohup) a plain line goes to the ``hybridformer.training`` logger every
``progress_every`` seconds instead (``step 40/200 (20%) | loss 0.6931 | 1,234 tok/s | ... ETA 0:01:30``),
plus "resumed from step N" and a closing summary. The CLI sends these loggers to stderr.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..io import write_text

__all__ = ["LOG_FILE", "RunLogger", "read_log"]

LOG_FILE = "log.jsonl"
_log = logging.getLogger("hybridformer.training")


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``<out_dir>/log.jsonl`` (empty list if there is none)."""
    path = Path(out_dir) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def _plain(value: Any) -> Any:
    """JSON has no NaN/inf; write them as strings so the file stays parseable."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Writes training metrics to JSON lines, TensorBoard and a progress bar.

    Args:
        out_dir: run folder (created if needed).
        total_steps: optimizer steps in the run (for the bar's ETA).
        start_step: steps already done (non-zero when resuming).
        progress_bar: show a tqdm bar (tqdm still hides it when not on a terminal).
        tensorboard: write event files to ``<out_dir>/tensorboard``.
        progress_every: without a visible bar, seconds between plain progress lines (0: every step).
    """

    def __init__(self, out_dir: str | Path, *, total_steps: int, start_step: int = 0, progress_bar: bool = True,
                 tensorboard: bool = True, progress_every: float = 15.0):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / LOG_FILE
        self._truncate_after(start_step)
        self._file = self.path.open("a", encoding="utf-8")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events the interrupted run wrote after its last checkpoint.
            self._writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=start_step or None)
        self._bar = tqdm(
            total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
            disable=None if progress_bar else True, desc="train",
        )
        self.total_steps, self.step, self.progress_every = total_steps, start_step, progress_every
        self._start_step, self._started = start_step, time.perf_counter()
        self._printed_at: float | None = None
        self._train_seconds, self._tokens, self._loss = 0.0, 0, float("nan")

    def _truncate_after(self, step: int) -> None:
        records = [r for r in read_log(self.out_dir) if r.get("step", 0) <= step]
        if self.path.is_file():
            text = "".join(json.dumps(r) + "\n" for r in records)
            write_text(self.path, text)

    @property
    def bar_visible(self) -> bool:
        return not self._bar.disable

    def advance(self, steps: int = 1, *, loss: float | None = None, tokens: int = 0, seconds: float = 0.0) -> None:
        """Count ``steps`` optimizer steps (taking ``seconds`` of training, reading ``tokens``).

        Moves the bar; without one, prints a progress line when ``progress_every`` seconds have
        passed since the last (and at the first and the last step).
        """
        self._bar.update(steps)
        self.step += steps
        self._train_seconds += seconds
        self._tokens += tokens
        if loss is not None:
            self._loss = loss
        if self.bar_visible:
            return
        now = time.perf_counter()
        due = self._printed_at is None or now - self._printed_at >= self.progress_every
        if due or self.step >= self.total_steps:
            self._printed_at = now
            _log.info(self.progress_line())

    def progress_line(self) -> str:
        """``step 40/200 (20%) | loss 0.6931 | 1,234 tok/s, 3.10 steps/s | elapsed 0:00:12, ETA 0:00:52``."""
        done = self.step - self._start_step
        rate = done / self._train_seconds if self._train_seconds > 0 else 0.0
        eta = (self.total_steps - self.step) / rate if rate > 0 else float("nan")
        return (
            f"step {self.step}/{self.total_steps} ({100 * self.step / max(self.total_steps, 1):.0f}%) | "
            f"loss {self._loss:.4f} | {self._tokens / max(self._train_seconds, 1e-9):,.0f} tok/s, {rate:.2f} steps/s | "
            f"elapsed {_clock(time.perf_counter() - self._started)}, "
            f"ETA {_clock(eta) if math.isfinite(eta) else '?'}"
        )

    def note(self, message: str) -> None:
        """A line for whoever reads the run (``resumed from step N``, the closing summary)."""
        if self.bar_visible:
            self._bar.write(message)
        else:
            _log.info(message)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` at ``step`` everywhere; keys starting ``eval/`` are evaluation results."""
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(key if "/" in key else f"train/{key}", value, step)
        if self.bar_visible:
            shown = {
                k.removeprefix("eval/"): _fmt(v) for k, v in metrics.items() if k == "loss" or k.startswith("eval/")
            }
            if "tokens_per_s" in metrics:
                shown["tok/s"] = f"{metrics['tokens_per_s']:,.0f}"
            self._bar.set_postfix(shown, refresh=False)
        elif any(k.startswith("eval/") for k in metrics):
            _log.info("step %d: %s", step, ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))

    def close(self) -> None:
        self._bar.close()
        self._file.close()
        if self._writer is not None:
            self._writer.close()
