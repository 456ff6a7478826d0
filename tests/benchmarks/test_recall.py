"""benchmarks/recall.py: the task is what it claims (pairs far outside the query's window, label = the
queried pair's value), the oracle set holds the needed token, and one real training step runs."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import recall  # noqa: E402


def test_batch_puts_the_needed_pair_outside_the_query_window_with_its_value_as_label():
    n = 512
    batch = recall.make_batch(torch.Generator().manual_seed(0), 8, n)
    for b in range(8):
        pairs = (batch["kind"][b] == 1).nonzero().flatten()
        assert len(pairs) == recall.PAIRS and int(pairs.max()) < 3 * n // 4
        assert int(batch["kind"][b, -1]) == 2  # the query, at the end
        needed = int(batch["needed"][b])
        assert needed in pairs.tolist() and needed < n - recall.WINDOW  # never in the query's block
        assert int(batch["key"][b, needed]) == int(batch["key"][b, -1])
        assert int(batch["value"][b, needed]) == int(batch["label"][b])
        keys = batch["key"][b, pairs]
        assert len(set(keys.tolist())) == recall.PAIRS  # the query's key is unambiguous


def test_oracle_set_is_found_and_local_sees_nothing_far():
    batch = recall.make_batch(torch.Generator().manual_seed(1), 4, 512)
    sets = recall.oracle_indices(batch)
    assert bool(recall.found([sets], batch["needed"]).all())
    assert not bool(recall.found([None], batch["needed"]).any())
    torch.manual_seed(0)
    model = recall.RecallModel(recall.attention_config("local"))
    x = recall.make_batch(torch.Generator().manual_seed(2), 2, 512)
    changed = {k: v.clone() for k, v in x.items()}
    changed["value"][:, : 3 * 512 // 4] = -1  # wipe every value far from the query
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(changed)[0])  # local attention cannot read them


def test_one_run_trains_saves_and_resumes_evaluation_at_a_longer_length(tmp_path):
    stem = tmp_path / "learned-compressed-seed0-steps1"
    record = recall.run_one("learned-compressed", 320, seed=0, steps=1, sizes=[320], stem=stem, sequences=24)
    assert record["train_n"] == 320 and set(record["eval"]) == {"320"}
    first = record["eval"]["320"]
    assert 0.0 <= first["accuracy"] <= 1.0 and 0.0 <= first["selection_recall"] <= 1.0
    assert first["eval_sequences"] == 24
    # A second call reloads the saved weights (no retraining) and adds only the missing length.
    again = recall.run_one("learned-compressed", 320, seed=0, steps=1, sizes=[320, 640], stem=stem, sequences=24)
    assert again["train_s"] == record["train_s"] and again["eval"]["320"] == first
    assert set(again["eval"]) == {"320", "640"}
    model, _ = recall.train_one("learned-compressed", 320, seed=0, steps=1)
    assert recall.evaluate(model, "learned-compressed", 320, 24)["accuracy"] == first["accuracy"]  # same weights
