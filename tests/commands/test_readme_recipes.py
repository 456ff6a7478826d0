"""Every command of the README's "Recipes" section, run as written (tiny step budgets appended)."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest

from hybridformer.cli import main
from hybridformer.data import load_builtin
from hybridformer.training import read_log

README = Path(__file__).resolve().parents[2] / "README.md"
# Appended to each finetune (later flags win): 2 steps at 32 tokens on a 48-example pick, no TensorBoard.
TINY = ["--data.train_subset", "48", "--data.max_length", "32", "--train.max_steps", "2",
        "--train.batch_size", "8", "--train.tensorboard", "false", "--eval_splits", "test", "--train.log_every", "1"]


def recipe_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block between '### Recipes' and the next '## ' heading."""
    text = README.read_text()
    section = text.split("### Recipes", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def commands(code: str) -> list[list[str]]:
    joined = code.replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in joined.splitlines() if line.strip().startswith("hybridformer ")]


def budget(argv: list[str]) -> list[str]:
    if argv[0] != "finetune":
        return argv
    extra = list(TINY)
    if "--train.resume" in argv:
        extra += ["--train.max_steps", "3"]  # continue the 2-step run below by one step
    elif "--train.save_every" in argv:
        extra += ["--train.save_every", "1", "--train.keep_checkpoints", "true"]
    return [*argv, *extra]


def test_readme_recipes_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    train = load_builtin("sentiment").train
    with open("my.csv", "w", newline="") as f:  # the user's CSV: a text and a label column
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(120):
            writer.writerow([train.texts[i], train.label_names[train.labels[i]]])

    blocks = recipe_blocks()
    assert {lang for lang, _ in blocks} == {"bash", "python"}
    namespace: dict[str, object] = {}
    ran: list[list[str]] = []
    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, str(README), "exec"), namespace)
            continue
        for argv in commands(code):
            code_ = main(budget(argv))
            out = capsys.readouterr()
            assert code_ == 0, (argv, out.err)
            ran.append(argv)
            if "--train.resume" in argv:
                assert "resumed from step 2" in out.err
    assert [a[0] for a in ran] == ["finetune", "evaluate", "finetune", "finetune"]

    # evaluate reused the recorded data settings: the same carved-out test rows as finetune scored.
    trained = json.loads(Path("runs/mine/metrics.json").read_text())
    evaluated = json.loads(Path("runs/mine/eval_file_test/metrics.json").read_text())
    assert evaluated["n_examples"] == trained["test"]["n_examples"] == 12
    assert evaluated["accuracy"] == trained["test"]["accuracy"]
    assert evaluated["data"]["max_length"] == 32 and evaluated["data"]["train_file"].endswith("my.csv")
    assert Path("runs/mine/eval_file_test/confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(Path("runs/mine/eval_file_test/predictions.jsonl").read_text().splitlines()) == 12
    assert not Path("runs/mine/checkpoints").exists()  # deleted after a successful finish
    assert not Path("runs/long/checkpoints").exists()  # the resumed run finished: deleted too
    assert [r["step"] for r in read_log("runs/long") if "loss" in r] == [1, 2, 3]  # one run: 2 steps, resumed, 1
    assert namespace["logits"].shape == (1, 2)  # the gated classifier's forward ran
