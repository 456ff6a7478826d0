"""A run folder's report: its ``results.json`` (SPEC §9 rows) rendered as ``report.md`` and PNG plots.

``results.json`` is ``{"machine": {...}, "rows": [...]}``; each row has ``case`` and ``variant`` and,
where they apply, the fields the summary table and the plots read:

- score: ``accuracy`` (a fraction), else the first of :data:`SCORE_KEYS` present, else ``caption``;
- speed: ``tokens_per_s``, ``throughput`` or ``examples_per_s``, else ``median_ms``;
- ``size_bytes``; ``outputs`` (where the run's files are); ``command`` (what reproduces the row);
- ``log``: a run's ``log.jsonl`` (or its folder), as ``training/logging.py`` writes it (one JSON
  object per line, training records with ``step`` and ``loss``), read into the row's ``curve``;
- ``open_fraction_per_layer``, ``image`` + ``caption``: see :mod:`report_plots`.

Relative ``log`` and ``image`` paths are relative to the run folder. Each plot is drawn only when its
rows exist; the report says which were absent and what they need.

    hybridformer report outputs/demo     # rewrites outputs/demo/report.md and outputs/demo/plots/*.png
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridformer.evaluation.report_plots import PLOTS, Row, speed_of

__all__ = ["RESULTS_FILE", "REPORT_FILE", "PLOTS_DIR", "RunResults", "Report", "load_run", "summary_table", "render_report"]

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
LOG_FILE = "log.jsonl"  # the name training/logging.py gives a run's metrics
SCORE_KEYS = ("accuracy", "zero_shot_accuracy", "r_at_1", "vqa_accuracy", "macro_f1", "loss")
"""Score fields of a row, in order of preference (the first present is the row's score)."""


@dataclass
class RunResults:
    """A run folder's results, ready to render."""

    folder: Path
    """The run folder."""
    rows: list[Row]
    """SPEC §9 rows; relative ``log`` and ``image`` paths resolved, ``curve`` read from each ``log``."""
    machine: dict[str, Any] = field(default_factory=dict)
    """What the figures were measured on (``machine_info`` of the benchmarks)."""


@dataclass
class Report:
    """What :func:`render_report` wrote."""

    markdown: str
    """The text of ``report.md``."""
    figures: dict[str, Path]
    """Plot name -> PNG file, for every plot drawn."""
    absent: dict[str, str]
    """Plot name -> what its rows would need, for every plot not drawn."""


def _read_curve(log: Path) -> list[list[float]]:
    """``[[step, loss], ...]`` of the training records of a log.jsonl (evaluation records have no loss)."""
    path = log / LOG_FILE if log.is_dir() else log
    if not path.is_file():
        return []
    curve = []
    for line in path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        loss = record.get("loss")
        if isinstance(loss, (int, float)) and math.isfinite(loss) and "step" in record:
            curve.append([record["step"], loss])
    return curve


def load_run(folder: str | Path) -> RunResults:
    """Read ``<folder>/results.json``; resolve its rows' paths and read their training curves.

    Raises:
        FileNotFoundError: no results.json in the folder.
        ValueError: the file is not JSON, or holds no list of row objects under ``rows``.
    """
    folder = Path(folder)
    path = folder / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {RESULTS_FILE} in the run folder (is {folder} a run folder?)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f'{path}: expected {{"machine": {{...}}, "rows": [{{...}}, ...]}} (SPEC §9)')
    resolved = []
    for row in rows:
        row = dict(row)
        for key in ("log", "image"):
            if isinstance(row.get(key), str):
                row[key] = str(folder / row[key])  # an absolute path stays as it is
        if "log" in row and "curve" not in row:
            row["curve"] = _read_curve(Path(row["log"]))
        resolved.append(row)
    return RunResults(folder, resolved, data.get("machine") or {})


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _score(row: Row) -> str:
    key = next((k for k in SCORE_KEYS if isinstance(row.get(k), (int, float))), None)
    if key is None:
        return f'"{row["caption"]}"' if isinstance(row.get("caption"), str) else "-"
    value = row[key]
    if key == "loss":
        return f"loss {value:.4g}"
    return f"{key.replace('_', ' ')} {100 * value:.1f}%"


def _speed(row: Row) -> str:
    speed = speed_of(row)
    if speed is not None:
        unit = {"tokens_per_s": "tokens/s", "throughput": "/s", "examples_per_s": "examples/s"}[speed[0]]
        return f"{_number(speed[1])} {unit}"
    if isinstance(row.get("median_ms"), (int, float)):
        return f"{_number(row['median_ms'])} ms"
    return "-"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_table(rows: list[Row]) -> str:
    """A Markdown table with one line per row: what ran, its score, its speed, its size, where its
    outputs are, the command that reproduces it."""
    sized = any(isinstance(r.get("size_bytes"), (int, float)) for r in rows)
    head = ["what ran", "score", "speed", *(["size"] if sized else []), "outputs", "command"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r.get('case', '?')} / {r.get('variant', '?')}", _score(r), _speed(r)]
        if sized:
            cells.append(f"{r['size_bytes'] / 1e6:.1f} MB" if isinstance(r.get("size_bytes"), (int, float)) else "-")
        cells.append(f"`{r['outputs']}`" if r.get("outputs") else "-")
        cells.append(f"`{r['command']}`" if r.get("command") else "-")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _machine_line(machine: dict[str, Any]) -> str:
    if not machine:
        return ""
    load = machine.get("load_average")
    parts = [f"{machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} cores"]
    if load:
        parts.append("load average " + " / ".join(f"{x:.2f}" for x in load))
    if machine.get("torch"):
        parts.append(f"torch {machine['torch']}")
    return "Measured on " + ", ".join(parts) + ".\n\n"


def render_report(run: RunResults, out_dir: str | Path | None = None) -> Report:
    """Write ``report.md`` and the plots (under ``plots/``) of ``run`` into ``out_dir`` (default: the
    run folder); each figure's section names the commands that reproduce it."""
    out = Path(out_dir) if out_dir is not None else run.folder
    plots = out / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    parts = [f"# Report: {run.folder.name}\n\n", _machine_line(run.machine), summary_table(run.rows), "\n"]
    figures, absent = {}, {}
    for plot in PLOTS:
        path = plots / f"{plot.name}.png"
        path.unlink(missing_ok=True)  # a figure whose rows are gone must not survive a re-render
        used = plot.draw(run.rows, path)
        if not used:
            absent[plot.name] = plot.needs
            continue
        figures[plot.name] = path
        parts.append(f"\n## {plot.title}\n\n![{plot.title}]({PLOTS_DIR}/{plot.name}.png)\n")
        commands = list(dict.fromkeys(r["command"] for r in used if r.get("command")))
        if commands:
            parts.append("\nReproduce with:\n\n" + "".join(f"    {c}\n" for c in commands))
    if absent:
        parts.append("\n## Plots not drawn (their series are absent)\n\n")
        parts.extend(f"- {name}: needs {needs}\n" for name, needs in absent.items())
    markdown = "".join(parts)
    (out / REPORT_FILE).write_text(markdown)
    return Report(markdown, figures, absent)
