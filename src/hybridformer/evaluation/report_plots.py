"""The report's figures: pure functions from SPEC §9 rows to PNG files (matplotlib, no display).

Each plot reads the row fields its docstring names and returns the rows it drew from (so the report
can name the commands that reproduce it), or an empty list when its series are absent — then no file
is written. Figures are built with matplotlib's object API (``matplotlib.figure.Figure``), which
renders with Agg and leaves pyplot's global state alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

__all__ = ["PLOTS", "Plot", "speed_of", "attention_series"]

Row = dict[str, Any]
SPEED_KEYS = ("tokens_per_s", "throughput", "examples_per_s")
"""Speed fields of a row, in order of preference (the first present is the row's speed)."""
_LENGTH_CASE = re.compile(r"^(?:(?P<family>.+)-)?N=(?P<n>\d+)$")  # "N=4096", "encoder-N=8192"; not "-fwdbwd"


def speed_of(row: Row) -> tuple[str, float] | None:
    """(field, value) of the row's speed: its first present field of ``SPEED_KEYS``."""
    return next(((k, float(row[k])) for k in SPEED_KEYS if isinstance(row.get(k), (int, float))), None)


def label_of(row: Row) -> str:
    return f"{row.get('case', '?')} / {row.get('variant', '?')}"


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_accuracy_speed(rows: list[Row], path: Path) -> list[Row]:
    """Accuracy against inference speed, one point per row with ``accuracy`` and a speed field,
    one colour per ``case``; the speed axis is logarithmic."""
    used = [r for r in rows if isinstance(r.get("accuracy"), (int, float)) and speed_of(r)]
    if not used:
        return []
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    cases = list(dict.fromkeys(r.get("case", "?") for r in used))
    for i, case in enumerate(cases):
        points = [r for r in used if r.get("case", "?") == case]
        xs, ys = [speed_of(r)[1] for r in points], [100 * r["accuracy"] for r in points]
        ax.scatter(xs, ys, s=48, color=f"C{i}", label=case, zorder=3)
        for r, x, y in zip(points, xs, ys):
            ax.annotate(str(r.get("variant", "")), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    units = sorted({speed_of(r)[0] for r in used})
    ax.set_xscale("log")
    ax.set_xlabel("inference speed (" + ", ".join(u.replace("_", " ") for u in units) + ", log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs inference speed")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return used


def attention_series(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows of inference cases named ``N=<n>`` or ``<family>-N=<n>`` with a ``median_ms``, grouped by
    ``<family> <variant>`` and sorted by length."""
    series: dict[str, list[Row]] = {}
    for r in rows:
        match = _LENGTH_CASE.match(str(r.get("case", "")))
        if match and isinstance(r.get("median_ms"), (int, float)):
            name = " ".join(filter(None, [match["family"], str(r.get("variant", "?"))]))
            series.setdefault(name, []).append({**r, "_n": int(match["n"])})
    return {k: sorted(v, key=lambda r: r["_n"]) for k, v in series.items()}


def plot_attention_scaling(rows: list[Row], path: Path) -> list[Row]:
    """Time (``median_ms``) and peak memory (``peak_mb``) against sequence length, one line per
    family and variant (hybrid, full/sdpa, Longformer), both axes logarithmic."""
    series = attention_series(rows)
    if not series:
        return []
    fig = Figure(figsize=(10, 4.2))
    time_ax, mem_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (name, points) in enumerate(series.items()):
        ns = [r["_n"] for r in points]
        time_ax.plot(ns, [r["median_ms"] for r in points], "o-", color=f"C{i}", label=name)
        mem = [(r["_n"], r["peak_mb"]) for r in points if isinstance(r.get("peak_mb"), (int, float))]
        if mem:
            mem_ax.plot(*zip(*mem), "o-", color=f"C{i}", label=name)
    lengths = sorted({r["_n"] for points in series.values() for r in points})
    for ax, what in ((time_ax, "time per call (ms)"), (mem_ax, "peak extra memory (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(lengths, [f"{n:,}" for n in lengths])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # labels at 1, 2, 5 x 10^k: readable
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    time_ax.set_title("Time per call vs length")
    mem_ax.set_title("Peak memory vs length")
    _save(fig, path)
    return [r for points in series.values() for r in points]


def plot_training_curves(rows: list[Row], path: Path) -> list[Row]:
    """Training loss against step, one line per row with a ``curve`` (``[[step, loss], ...]``, which
    ``report.load_run`` reads from the row's ``log``); the loss axis is logarithmic when every loss is positive."""
    used = [r for r in rows if r.get("curve")]
    if not used:
        return []
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for i, r in enumerate(used):
        steps, losses = zip(*r["curve"])
        ax.plot(steps, losses, color=f"C{i}", label=label_of(r), linewidth=1.2)
    if all(loss > 0 for r in used for _, loss in r["curve"]):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title("Training curves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return used


def plot_open_fraction(rows: list[Row], path: Path) -> list[Row]:
    """Open fraction of the gated FFN groups per layer, one line per row with
    ``open_fraction_per_layer`` (a list, layer 0 first, each in [0, 1])."""
    used = [r for r in rows if r.get("open_fraction_per_layer")]
    if not used:
        return []
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for i, r in enumerate(used):
        fractions = r["open_fraction_per_layer"]
        ax.plot(range(len(fractions)), [100 * f for f in fractions], "o-", color=f"C{i}", label=label_of(r))
    ax.set_ylim(0, 105)
    ax.set_xlabel("layer")
    ax.set_ylabel("FFN groups open (% of token-group pairs)")
    ax.set_title("Gated FFN: open fraction per layer")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return used


def plot_model_size(rows: list[Row], path: Path) -> list[Row]:
    """Model size on disk (``size_bytes``) per row, in row order (the compression steps), one bar each,
    labelled with the size in MB."""
    used = [r for r in rows if isinstance(r.get("size_bytes"), (int, float))]
    if not used:
        return []
    fig = Figure(figsize=(max(4.8, 1.3 * len(used) + 2), 4.0))
    ax = fig.add_subplot()
    sizes = [r["size_bytes"] / 1e6 for r in used]
    bars = ax.bar(range(len(used)), sizes, color=[f"C{i}" for i in range(len(used))])
    ax.bar_label(bars, labels=[f"{s:.1f} MB" for s in sizes], fontsize=8)
    ax.set_xticks(range(len(used)), [str(r.get("variant", "?")) for r in used], rotation=20, ha="right")
    ax.set_ylabel("size on disk (MB)")
    ax.set_title("Model size per compression step")
    ax.margins(y=0.15)
    _save(fig, path)
    return used


def plot_captions(rows: list[Row], path: Path) -> list[Row]:
    """A grid of the images of rows with ``image`` (a path) and ``caption`` (the generated text), each
    captioned above it; rows whose image file is missing are left out."""
    from PIL import Image

    used = [r for r in rows if r.get("image") and isinstance(r.get("caption"), str) and Path(r["image"]).is_file()]
    if not used:
        return []
    cols = min(4, len(used))
    grid_rows = math.ceil(len(used) / cols)
    fig = Figure(figsize=(2.6 * cols, 2.9 * grid_rows))
    for i, r in enumerate(used):
        ax = fig.add_subplot(grid_rows, cols, i + 1)
        with Image.open(r["image"]) as image:
            ax.imshow(image.convert("RGB"))
        ax.set_axis_off()
        ax.set_title("\n".join(_wrap(r["caption"], 28)), fontsize=9)
    _save(fig, path)
    return used


def _wrap(text: str, width: int) -> list[str]:
    """Words of ``text`` in lines of at most ``width`` characters (a longer word gets its own line)."""
    lines: list[str] = []
    for word in text.split() or [""]:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


@dataclass(frozen=True)
class Plot:
    """One figure of the report."""

    name: str
    """File stem: the figure is ``<name>.png``."""
    title: str
    """Heading of its section in the report."""
    needs: str
    """What its rows must hold (said in the report when it is absent)."""
    draw: Callable[[list[Row], Path], list[Row]]
    """Draws the rows into the path; returns the rows drawn from (none: no file written)."""


PLOTS = [
    Plot("accuracy_vs_speed", "Accuracy vs inference speed", "rows with `accuracy` and a speed "
         "(`tokens_per_s`, `throughput` or `examples_per_s`)", plot_accuracy_speed),
    Plot("attention_scaling", "Attention time and peak memory vs sequence length",
         "rows with case `N=<n>` or `<family>-N=<n>` and `median_ms`", plot_attention_scaling),
    Plot("training_curves", "Training curves", "rows with a `log` (a run's log.jsonl with `loss`)", plot_training_curves),
    Plot("open_fraction", "Gated FFN open fraction per layer", "rows with `open_fraction_per_layer`", plot_open_fraction),
    Plot("model_size", "Model size per compression step", "rows with `size_bytes`", plot_model_size),
    Plot("captions", "Images and their generated captions", "rows with `image` (an existing file) and `caption`",
         plot_captions),
]
"""Every figure of the report, in the order it shows them."""
