"""RunLogger: JSON lines, resume truncation, plain progress lines when not on a terminal."""

from __future__ import annotations

import json
import logging

from hybridformer.training import RunLogger, read_log


def test_records_truncation_on_resume_and_non_tty_fallback(tmp_path, caplog):
    log = RunLogger(tmp_path, total_steps=5, tensorboard=False)
    assert not log.bar_visible  # pytest's stderr is not a terminal: tqdm hides the bar itself
    with caplog.at_level(logging.INFO, logger="hybridformer.training"):
        for step in (1, 2, 3):
            log.log(step, {"loss": 1.0 / step, "lr": 0.1})
        log.log(3, {"eval/accuracy": 0.75})
        log.log(4, {"loss": float("nan")})
    log.close()
    assert "step 3: eval/accuracy=0.75" in caplog.text  # evaluations are printed; steps go to progress lines
    records = read_log(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 3, 4]
    assert records[-1]["loss"] == "nan"  # JSON has no NaN; the file stays parseable
    assert all(json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines())

    resumed = RunLogger(tmp_path, total_steps=5, start_step=2, tensorboard=False)
    resumed.log(3, {"loss": 0.3})
    resumed.close()
    assert [(r["step"], r.get("loss")) for r in read_log(tmp_path)] == [(1, 1.0), (2, 0.5), (3, 0.3)]


def test_progress_lines_at_a_fixed_interval_without_a_terminal(tmp_path, caplog):
    every_step = RunLogger(tmp_path / "a", total_steps=4, start_step=1, tensorboard=False, progress_every=0)
    with caplog.at_level(logging.INFO, logger="hybridformer.training"):
        for step in (2, 3, 4):
            every_step.advance(loss=1.0 / step, tokens=100, seconds=0.5)
        every_step.note("resumed from step 1")
    every_step.close()
    lines = caplog.messages
    assert [m.split()[1] for m in lines[:3]] == ["2/4", "3/4", "4/4"]
    assert "loss 0.5000 | 200 tok/s, 2.00 steps/s" in lines[0] and lines[0].endswith("ETA 0:00:01")
    assert lines[2].endswith("ETA 0:00:00") and lines[3] == "resumed from step 1"

    caplog.clear()
    hourly = RunLogger(tmp_path / "b", total_steps=50, tensorboard=False, progress_every=3600)
    with caplog.at_level(logging.INFO, logger="hybridformer.training"):
        for _ in range(50):
            hourly.advance(loss=0.1, tokens=10, seconds=0.01)
    hourly.close()
    assert [m.split()[1] for m in caplog.messages] == ["1/50", "50/50"]  # the first, then due, and the last
