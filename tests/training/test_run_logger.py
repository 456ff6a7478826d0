"""RunLogger: JSON lines, resume truncation, non-terminal fallback to the logging module."""

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
    assert "step 2: loss=0.5, lr=0.1" in caplog.text
    records = read_log(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 3, 4]
    assert records[-1]["loss"] == "nan"  # JSON has no NaN; the file stays parseable
    assert all(json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines())

    resumed = RunLogger(tmp_path, total_steps=5, start_step=2, tensorboard=False)
    resumed.log(3, {"loss": 0.3})
    resumed.close()
    assert [(r["step"], r.get("loss")) for r in read_log(tmp_path)] == [(1, 1.0), (2, 0.5), (3, 0.3)]
