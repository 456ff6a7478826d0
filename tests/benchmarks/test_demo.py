"""benchmarks/demo.py: phases are picked by name, and a phase run through the driver leaves its row in
results.json and a rendered report (the whole run is `make demo`'s job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo.py"), *args], env=env,
                          capture_output=True, text=True)


def test_vqa_phase_ranks_answers_and_the_report_is_rendered(tmp_path):
    """The ranked zero-shot VQA phase on a saved (random) `tiny` folder: its row and the rendered report."""
    from hybridformer.registry import load_model, save_model

    torch.manual_seed(0)
    save_model(load_model("tiny"), tmp_path / "mm" / "model")
    done = _demo("--phases", "vqa", "--vqa-questions", "8", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "[1/1] vqa: zero-shot VQA on held-out digits, answers ranked" in done.stdout
    result = json.loads((tmp_path / "results.json").read_text())
    (row,) = result["rows"]
    scored = json.loads((tmp_path / "mm" / "vqa-rank.json").read_text())
    assert row["vqa_accuracy"] == scored["metrics"]["vqa_accuracy"] and 0.0 <= row["vqa_accuracy"] <= 1.0
    assert "--vqa.answer rank" in row["command"] and "--eval_limit 8" in row["command"]
    assert [p["phase"] for p in result["phases"]] == ["vqa"] and "load_average" in result["machine"]
    report = (tmp_path / "report.md").read_text()
    assert "| what ran |" in report and "zero-shot VQA, ranked (8 questions)" in report


def test_unknown_phase_names_the_choices(tmp_path):
    done = _demo("--phases", "nope", "--out", str(tmp_path))
    assert done.returncode != 0 and "--phases: unknown ['nope']; choose from ['sentiment'," in done.stderr
