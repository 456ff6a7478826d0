"""benchmarks/multimodal_experiment.py's report: mean/std over the seeds that ran, the not_run list of a
partial grid, and the target verdicts against hand-computed thresholds."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import multimodal_experiment as mx  # noqa: E402


def _write(runs: Path, case: str, variant: str, seed: int, score: float) -> None:
    path = runs / case / variant / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"score": score}))


def test_report_of_a_partial_grid(tmp_path):
    runs = tmp_path / "runs"
    for seed, (p, c) in enumerate([(0.30, 0.10), (0.36, 0.10)]):
        _write(runs, "zeroshot-cls", "pretrained", seed, p)
        _write(runs, "zeroshot-cls", "chance", seed, c)
    _write(runs, "image-cls", "pretrained", 0, 0.50)
    _write(runs, "image-cls", "resnet-only", 0, 0.48)
    out = tmp_path / "multimodal.json"
    mx.main(["--phase", "report", "--seeds", "2", "--runs-dir", str(runs), "--out", str(out)])
    record = json.loads(out.read_text())
    rows = {(r["case"], r["variant"]): r for r in record["rows"] if "score_mean" in r}
    zs = rows[("zeroshot-cls", "pretrained")]
    assert zs["seeds"] == 2 and abs(zs["score_mean"] - 0.33) < 1e-12
    assert abs(zs["score_std"] - statistics.stdev([0.30, 0.36])) < 1e-12
    assert "image-cls/pretrained/seed1" in record["not_run"] and "zeroshot-cls/pretrained/seed0" not in record["not_run"]
    assert "vqa-fewshot/scratch/seed0" in record["not_run"] and "pretrain-demo-time" in record["not_run"]
    table = out.with_name("multimodal_table.md").read_text()
    # zeroshot-cls: 0.33 >= 3 x 0.10 (met); image-cls: 0.50 < 0.48 + 0.028 (missed)
    assert "zeroshot-cls: pretrained 0.330" in table and "image-cls: pretrained 0.500" in table
    lines = {line.split(":")[0]: line for line in table.splitlines() if line.startswith("- ")}
    assert lines["- image-cls"].endswith("**missed**") and lines["- zeroshot-cls"].endswith("**met**")
    assert lines["- vqa-fewshot"] == "- vqa-fewshot: not run"
    assert out.with_suffix(".png").is_file()


def test_ranking_rows_are_judged_against_scratch_and_chance(tmp_path):
    runs = tmp_path / "runs"
    for seed, (p, s, c) in enumerate([(0.40, 0.30, 0.333), (0.40, 0.32, 0.333)]):
        _write(runs, "vqa-zeroshot-rank", "pretrained", seed, p)
        _write(runs, "vqa-zeroshot-rank", "scratch", seed, s)
        _write(runs, "vqa-zeroshot-rank", "chance", seed, c)
        _write(runs, "vqa-fewshot-rank", "pretrained", seed, 0.5)
        _write(runs, "vqa-fewshot-rank", "scratch", seed, 0.5)
    out = tmp_path / "rank.json"
    mx.main(["--phase", "report", "--seeds", "2", "--runs-dir", str(runs), "--out", str(out)])
    table = out.with_name("rank_table.md").read_text()
    # 0.40 >= 1.18 x 0.31 = 0.366 (met) and >= chance 0.333 (met); few-shot 0.5 < 1.18 x 0.5 (missed)
    assert "- vqa-zeroshot-rank: pretrained 0.400 ± 0.000 vs scratch 0.310 ± 0.014; target ≥ 1.18 × scratch = 0.366: **met**" in table
    assert "vs chance 0.333 ± 0.000; target ≥ 1 × chance = 0.333: **met**" in table
    assert "- vqa-fewshot-rank: pretrained 0.500 ± 0.000 vs scratch 0.500 ± 0.000; target ≥ 1.18 × scratch = 0.590: **missed**" in table


def test_a_pretrained_folder_of_another_budget_is_not_reused(tmp_path):
    """--pretrain-steps / --gate-lr-multiplier change the pretrained models: a runs folder pretrained
    under another budget stops the run with both budgets named instead of mixing them."""
    import pytest

    stamp = tmp_path / "runs" / "pretrain" / "seed0" / "budget.json"
    stamp.parent.mkdir(parents=True)
    stamp.write_text(json.dumps({"objectives": ["itc", "caption"], "pretrain_steps": 100, "pretrain_lr": 1e-3,
                                 "gate_lr_multiplier": 1.0, "batch_size": 16}))
    with pytest.raises(SystemExit, match="pretrained under .*'pretrain_steps': 100.* not this run's .*'pretrain_steps': 300"):
        mx.main(["--phase", "train", "--seeds", "1", "--pretrain-steps", "300", "--gate-lr-multiplier", "100",
                 "--cases", "vqa-zeroshot-rank", "--runs-dir", str(tmp_path / "runs")])
