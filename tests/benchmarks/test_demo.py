"""benchmarks/demo.py: phases are picked by name, a pending phase says why it is skipped, and the run
folder ends with results.json and a rendered report (the phases themselves are `make demo`'s job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _demo(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo.py"), *args], env=env,
                          capture_output=True, text=True)


def test_pending_phase_is_announced_and_the_report_is_rendered(tmp_path):
    done = _demo("--phases", "vqa", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "[1/1] vqa: skipped (ranked VQA lands with issue 27's prompt-format work)" in done.stdout
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["rows"] == [] and result["phases"] == [] and "load_average" in result["machine"]
    report = (tmp_path / "report.md").read_text()
    assert "| what ran |" in report and "- captions: needs" in report


def test_unknown_phase_names_the_choices(tmp_path):
    done = _demo("--phases", "nope", "--out", str(tmp_path))
    assert done.returncode != 0 and "--phases: unknown ['nope']; choose from ['sentiment'," in done.stderr
