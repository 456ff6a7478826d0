"""GLUE end to end through the CLI: finetune on an official-layout folder, evaluate writes the score table and
the submission file; STS-B trains a 1-output regressor scored by Pearson/Spearman."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score

from hybridformer.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from glue_files import write_glue  # noqa: E402

TINY = ["--data.max_length", "24", "--train.max_steps", "2", "--train.batch_size", "4",
        "--train.tensorboard", "false", "--train.progress_bar", "false"]


@pytest.fixture(scope="module")
def glue_data(tmp_path_factory):
    return write_glue(tmp_path_factory.mktemp("glue_data"))


def test_rte_finetune_then_evaluate_writes_scores_and_submission(glue_data, tmp_path, capsys):
    run = tmp_path / "rte"
    assert main(["finetune", "--data.format", "glue", "--data.path", str(glue_data["RTE"]), "--out-dir", str(run),
                 *TINY]) == 0
    out = capsys.readouterr().out
    assert "validation: accuracy" in out
    record = json.loads((run / "metrics.json").read_text())
    assert record["task"] == "glue" and record["label_names"] == ["entailment", "not_entailment"]
    assert "test" not in record and record["validation"]["official"]["accuracy"] == record["validation"]["accuracy"]

    assert main(["evaluate", "--model-dir", str(run / "model"), "--out-dir", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "GLUE submission file written" in out
    lines = (tmp_path / "eval" / "RTE.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 1 + 3  # one row per test example
    assert {row.split("\t")[1] for row in lines[1:]} <= {"entailment", "not_entailment"}
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    rows = [json.loads(r) for r in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    want = accuracy_score([r["label"] for r in rows], [r["prediction"] for r in rows])
    assert metrics["glue"]["dev"]["accuracy"] == pytest.approx(want) and len(rows) == 4
    assert "| dev | 4 |" in (tmp_path / "eval" / "scores.md").read_text()


@pytest.mark.slow
def test_stsb_is_regression_and_mnli_has_two_dev_and_test_parts(glue_data, tmp_path, capsys):
    run = tmp_path / "stsb"
    assert main(["finetune", "--data.path", str(glue_data["STS-B"]), "--out-dir", str(run), *TINY]) == 0
    assert main(["evaluate", "--model-dir", str(run / "model"), "--out-dir", str(tmp_path / "e1")]) == 0
    rows = [json.loads(r) for r in (tmp_path / "e1" / "predictions.jsonl").read_text().splitlines()]
    glue = json.loads((tmp_path / "e1" / "metrics.json").read_text())["glue"]["dev"]
    labels, preds = [r["label"] for r in rows], [r["prediction"] for r in rows]
    assert glue["pearson"] == pytest.approx(pearsonr(labels, preds)[0], abs=1e-4)
    assert glue["spearman"] == pytest.approx(spearmanr(labels, preds)[0], abs=1e-4)
    assert len((tmp_path / "e1" / "STS-B.tsv").read_text().splitlines()) == 4
    run = tmp_path / "mnli"
    assert main(["finetune", "--data.path", str(glue_data["MNLI"]), "--out-dir", str(run), *TINY]) == 0
    assert main(["evaluate", "--model-dir", str(run / "model"), "--out-dir", str(tmp_path / "e2")]) == 0
    assert set(json.loads((tmp_path / "e2" / "metrics.json").read_text())["glue"]) == {"dev_matched", "dev_mismatched"}
    for name in ("MNLI-m.tsv", "MNLI-mm.tsv"):
        assert len((tmp_path / "e2" / name).read_text().splitlines()) == 4


@pytest.mark.parametrize("argv, needle", [
    (["finetune", "--data.path", "/nonexistent/RTE"], "data.path"),
    (["finetune", "--data.format", "glue"], "data.path"),
    (["finetune", "--data.task", "bbc", "--data.path", "x"], "data.path"),
])
def test_bad_glue_options_are_one_line(argv, needle, capsys):
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
