"""benchmarks/encoder.py: the three encoders have the same shape, and a tiny run writes SPEC §9 rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import encoder  # noqa: E402


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_longformer_has_our_shape_plus_its_global_projections_and_two_position_rows():
    n = 256
    ours = encoder.build_hybridformer("full", n, selection=None)
    theirs = encoder.build_longformer(n)
    d = encoder.D_MODEL
    # Longformer: q/k/v_global per layer, position ids from padding_idx + 1 = 2.
    assert _params(theirs) - _params(ours) == encoder.LAYERS * 3 * (d * d + d) + 2 * d
    assert ours.config.attention.kind == "full"
    hybrid = encoder.build_hybridformer("hybrid", n, selection=None)
    assert hybrid.config.attention.kind == "hybrid" and hybrid.config.attention.window == 128


def test_tiny_run_writes_one_row_per_case_and_variant(tmp_path):
    out = tmp_path / "encoder.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])}
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "encoder.py"), "--sizes", "128", "256", "--rounds", "1",
         "--inference-only", "--selection", "compressed", "--threads", "1", "--out", str(out)],
        check=True, env=env, cwd=tmp_path, capture_output=True, text=True,
    )
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["case"], r["variant"]) for r in rows] == [
        (f"encoder-N={n}", v) for n in (128, 256) for v in ("hybrid", "full", "longformer")
    ]
    for row in rows:
        assert row["median_ms"] > 0 and row["peak_mb"] >= 0 and row["repeats"] == 1
        assert abs(row["tokens_per_s"] - row["n"] / (row["median_ms"] / 1e3)) < 1e-6 * row["tokens_per_s"]
    assert {r["selection"] for r in rows if r["variant"] == "hybrid"} == {"compressed"}
    assert result["config"]["selection"] == "compressed" and "load_average" in result["machine"]
    assert result["targets"] == []  # no target names a 128- or 256-token case
