"""Targets and the Markdown report of benchmarks/recall.py."""

from __future__ import annotations

import json
import os
import platform

from _recall_notes import NOTES, NOTES_512
from hybridformer.io import write_text

CANDIDATE = "learned-pooled"
"""The selection the issue-24 targets are checked for (the hybrid default)."""


def _cpu() -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
        flags = " ".join(sorted({w for w in text.split() if w.startswith("avx512") or "vnni" in w}))
    except OSError:
        model = platform.processor()
    return f"{model} ({os.cpu_count()} cores; {flags or 'no avx512'})"


def check_targets(rows: list[dict], timing: dict) -> list[str]:
    """Issue 24's targets for `CANDIDATE` (else the best learned variant) per (training length, case):
    median accuracy >= 90% of the oracle's (80% for N > 2,048), >= 3x local, selection_recall >= 0.8;
    and from the timing pass, its step time against local and full, and its growth 2,048 -> 16,384."""
    lines = []
    for train_n, case in dict.fromkeys((r["train_n"], r["case"]) for r in rows):
        by = {r["variant"]: r for r in rows if r["case"] == case and r["train_n"] == train_n}
        learned = [r for v, r in by.items() if v.startswith("learned-")]
        if not learned or "oracle" not in by or "local" not in by:
            lines.append(f"train {train_n}, {case}: targets not checkable (needs local, oracle and a learned variant)")
            continue
        best = by.get(CANDIDATE) or max(learned, key=lambda r: r["score_median"])
        n = int(case.split("=")[1])
        share = 0.9 if n <= 2048 else 0.8
        oracle, local = by["oracle"]["score_median"], by["local"]["score_median"]
        checks = [
            (f"{best['score_median']:.3f} >= {share} x oracle {oracle:.3f}", best["score_median"] >= share * oracle),
            (f">= 3 x local {local:.3f}", best["score_median"] >= 3 * local),
            (f"selection_recall {best['selection_recall']:.3f} >= 0.8", best["selection_recall"] >= 0.8),
        ]
        verdict = "; ".join(f"{text} {'MET' if ok else 'NOT MET'}" for text, ok in checks)
        lines.append(f"train {train_n}, {case}: {best['variant']} (median of {best['seeds']} seeds): {verdict}")
    step = lambda v, n: timing.get(f"{v}@{n}", {}).get("median_ms")  # noqa: E731
    for n, full_share in ((2048, 0.6), (8192, 0.2)):
        mine, local, full = step(CANDIDATE, n), step("local", n), step("full", n)
        if mine and local and full:
            lines.append(
                f"step time at N={n}: {CANDIDATE} {mine:.0f} ms = {mine / local:.2f}x local ({local:.0f} ms; target <= 1.5x) "
                f"{'MET' if mine <= 1.5 * local else 'NOT MET'}; {mine / full:.2f}x full ({full:.0f} ms; target <= "
                f"{full_share}x) {'MET' if mine <= full_share * full else 'NOT MET'}"
            )
    if step(CANDIDATE, 2048) and step(CANDIDATE, 16384):
        growth = step(CANDIDATE, 16384) / step(CANDIDATE, 2048)
        lines.append(f"step time growth 2,048 -> 16,384: {growth:.1f}x (target <= 10x) {'MET' if growth <= 10 else 'NOT MET'}")
    return lines


def write_markdown(path: str, rows: list[dict], budget: dict, not_run: list[str], targets: list[str], timing: dict) -> None:
    columns = [
        "case", "variant", "train_n", "positions", "score_median", "score_mean", "score_std", "selection_recall",
        "step_ms", "eval_sequences", "train_s", "seeds", "steps",
    ]
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    loads = sorted({round(t["load_average"], 1) for t in timing.values()})
    transfer = any(r["train_n"] != int(r["case"].split("=")[1]) for r in rows)
    lines = [
        "# Long-range recall (benchmarks/recall.py, issues 16 and 24)",
        "",
        f"Budget: {json.dumps(budget)}. Chance = {budget['chance']:.4f}.",
        f"CPU: {_cpu()}. Load average {os.getloadavg()[0]:.1f} when written; timing pass load averages: "
        f"{loads or 'no timing pass'}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows),
        "",
        "Targets:",
        *(f"- {line}" for line in targets),
        "",
        "Not run: " + (", ".join(not_run) if not_run else "nothing of the requested grid"),
        "",
        NOTES_512 if transfer else NOTES,
    ]
    write_text(path, "\n".join(lines) + "\n")
