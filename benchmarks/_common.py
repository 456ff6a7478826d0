"""Helpers shared by the benchmark scripts: timing, peak memory, process isolation, JSON, table.

Every script writes `{"machine": machine_info(), "rows": [...]}` (SPEC §9) via `write_results` and
prints the rows with `print_table`. Rows of one case are measured side by side in one run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

__all__ = ["machine_info", "time_median", "peak_memory_mb", "run_forked", "write_results", "print_table"]


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, threads, memory, library versions."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def time_median(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` in milliseconds, over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_memory_mb(fn: Callable[[], Any]) -> float:
    """Peak extra resident memory (MiB) while `fn()` runs, above what was resident before.

    Measures real process memory (tensors, allocator caches, kernel scratch), not Python objects.
    On Linux the high-water mark is reset first (`/proc/self/clear_refs`), so the figure is the
    call's own peak. Freed memory the allocator kept from earlier calls is reused without showing
    up, so call this first in a fresh process (see `run_forked`) for an honest number. Elsewhere it
    falls back to the growth of `ru_maxrss`.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM, the resident high-water mark, to the current RSS
        before = _status_mb("VmRSS")
    except OSError:
        before = None
    if before is not None and _status_mb("VmHWM") is not None:
        fn()
        return max(0.0, _status_mb("VmHWM") - before)
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    return max(0.0, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / scale)


def _forked_target(conn, fn, args, kwargs) -> None:
    try:
        conn.send(("ok", fn(*args, **kwargs)))
    except BaseException:  # report any failure of the child to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_forked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn(*args, **kwargs)` in a forked child and return its (picklable) result.

    The child starts with the parent's imports (no re-import cost) but its own heap, so memory
    figures of one case are not flattered by memory another case freed. Keep the parent free of
    torch computations: forking after torch's thread pool started is unsafe.
    """
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_forked_target, args=(child, fn, args, kwargs))
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        proc.join()
        status, value = "error", f"child died with exit code {proc.exitcode} (out of memory?)"
    proc.join()
    if status != "ok":
        raise RuntimeError(value)
    return value


def write_results(path: str | os.PathLike, rows: list[dict[str, Any]], **extra: Any) -> None:
    """Write `{"machine": ..., "rows": rows, **extra}` as JSON to `path` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine_info(), "rows": rows, **extra}, indent=2) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print rows as an aligned text table (columns: union of the rows' keys, in first-seen order)."""
    if not rows:
        print("(no rows)")
        return
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    print("  ".join(col.ljust(w) for col, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
