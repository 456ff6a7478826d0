"""The multimodal dispatch of pretrain / finetune / evaluate: bad input is one line and exit 2 (config)
or 1 (a missing model folder); a real one-step pretraining + evaluation runs end to end (slow)."""

import json

import pytest

from hybridformer.cli import main


@pytest.mark.parametrize("argv, needle", [
    (["pretrain", "--objectives", "itc,nope", "--model", "tiny"], "objectives"),
    (["finetune", "--task", "segmentation", "--model", "tiny"], "task"),
    (["evaluate", "--task", "vqa", "--model", "tiny", "--data.task", "cifar"], "data.task"),
    (["pretrain", "--objectives", "itc", "--weights.itm", "2"], "weights.itm"),
])
def test_bad_options_print_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_a_missing_model_folder_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--task", "retrieval", "--model", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hybridformer.json" in err[0]


@pytest.mark.slow
def test_pretrain_then_evaluate_end_to_end(tmp_path, capsys):
    run = tmp_path / "mm"
    assert main(["pretrain", "--objectives", "mlm,itc,itm,caption", "--model", "tiny", "--out-dir", str(run),
                 "--train.max_steps", "2", "--train.batch_size", "4", "--train.progress_bar", "false"]) == 0
    record = json.loads((run / "metrics.json").read_text())
    assert record["steps"] == 2 and record["examples_per_s"] > 0
    assert main(["evaluate", "--task", "retrieval", "--model", str(run / "model"), "--eval_limit", "16",
                 "--out", str(tmp_path / "r.json")]) == 0
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert 0 <= metrics["r1"] <= metrics["r5"] <= 1
