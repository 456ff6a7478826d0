"""benchmarks/recall.py: the task is what it claims (pairs far outside the query's window, label = the
queried pair's value), the oracle set holds the needed token, positions are the Transformer's sinusoids,
and one real training run saves, resumes and reports its targets."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _recall_report as report  # noqa: E402
import _recall_task as task  # noqa: E402
import _recall_train as train  # noqa: E402


def test_batch_puts_the_needed_pair_outside_the_query_window_with_its_value_as_label():
    n = 512
    batch = task.make_batch(torch.Generator().manual_seed(0), 8, n)
    for b in range(8):
        pairs = (batch["kind"][b] == 1).nonzero().flatten()
        assert len(pairs) == task.PAIRS and int(pairs.max()) < 3 * n // 4
        assert int(batch["kind"][b, -1]) == 2  # the query, at the end
        needed = int(batch["needed"][b])
        assert needed in pairs.tolist() and needed < n - task.WINDOW  # never in the query's block
        assert int(batch["key"][b, needed]) == int(batch["key"][b, -1])
        assert int(batch["value"][b, needed]) == int(batch["label"][b])
        keys = batch["key"][b, pairs]
        assert len(set(keys.tolist())) == task.PAIRS  # the query's key is unambiguous


def test_sinusoidal_positions_are_the_transformer_formula():
    table = task.sinusoidal_positions(50, 8)
    for pos in (0, 7, 49):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert math.isclose(table[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-5)
            assert math.isclose(table[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-5)


def test_oracle_set_is_found_and_local_sees_nothing_far():
    batch = task.make_batch(torch.Generator().manual_seed(1), 4, 512)
    sets = task.oracle_indices(batch)
    assert bool(task.found([sets], batch["needed"]).all())
    assert not bool(task.found([None], batch["needed"]).any())
    for positions in task.POSITIONS:
        torch.manual_seed(0)
        model = task.RecallModel(task.attention_config("local"), positions)
        x = task.make_batch(torch.Generator().manual_seed(2), 2, 512)
        changed = {k: v.clone() for k, v in x.items()}
        changed["value"][:, : 3 * 512 // 4] = -1  # wipe every value far from the query
        with torch.no_grad():
            torch.testing.assert_close(model(x)[0], model(changed)[0])  # local attention cannot read them


def test_one_run_trains_saves_and_resumes_evaluation_at_a_longer_length(tmp_path):
    stem = tmp_path / "learned-pooled-seed0-steps1"
    record = train.run_one("learned-pooled", 320, "sinusoidal", 0, 1, [320], stem, sequences=24, batch_size=4)
    assert record["train_n"] == 320 and record["batch"] == 4 and set(record["eval"]) == {"320"}
    first = record["eval"]["320"]
    assert 0.0 <= first["accuracy"] <= 1.0 and 0.0 <= first["selection_recall"] <= 1.0
    assert first["eval_sequences"] == 24
    # A second call reloads the saved weights (no retraining) and adds only the missing length.
    again = train.run_one("learned-pooled", 320, "sinusoidal", 0, 1, [320, 640], stem, sequences=24, batch_size=4)
    assert again["train_s"] == record["train_s"] and again["eval"]["320"] == first
    assert set(again["eval"]) == {"320", "640"}
    model, _ = train.train_one("learned-pooled", 320, "sinusoidal", seed=0, steps=1, batch_size=4)
    assert train.evaluate(model, "learned-pooled", 320, 24)["accuracy"] == first["accuracy"]  # same weights


def test_targets_compare_medians_with_the_oracle_local_and_step_times():
    def row(variant, score, recall):
        return dict(case="recall-N=2048", variant=variant, train_n=2048, score_median=score, seeds=3, selection_recall=recall)

    rows = [row("local", 0.06, 0.0), row("oracle", 1.0, 1.0), row("learned-pooled", 0.95, 0.9)]
    timing = {"local@2048": {"median_ms": 100.0}, "learned-pooled@2048": {"median_ms": 160.0}, "full@2048": {"median_ms": 300.0}}
    lines = report.check_targets(rows, timing)
    assert "0.950 >= 0.9 x oracle 1.000 MET" in lines[0] and "selection_recall 0.900 >= 0.8 MET" in lines[0]
    assert "1.60x local (100 ms; target <= 1.5x) NOT MET" in lines[1]
    assert "0.53x full (300 ms; target <= 0.6x) MET" in lines[1]
