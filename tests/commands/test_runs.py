"""Runs a user can trust: one seed reproduces a run across processes, a killed run resumes exactly in a
new process, a piped run says what it does, ``--help`` lists every field, errors name the flag."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybridformer.cli import COMMANDS, main
from hybridformer.config import ConfigError, load_config
from hybridformer.config_help import field_paths
from hybridformer.recipes import EvaluateConfig, FinetuneConfig
from hybridformer.training import latest_checkpoint, read_log

SRC = Path(__file__).resolve().parents[2] / "src"
# The bundled MiniLM, 4 optimizer steps of 8 examples at 32 tokens; a record and a progress line per step.
RUN = ["finetune", "--train.max_steps", "4", "--data.train_subset", "64", "--data.max_length", "32",
       "--train.batch_size", "8", "--train.log_every", "1", "--train.progress_every", "0", "--train.seed", "3",
       "--train.tensorboard", "false", "--eval_splits", "test", "--data.eval_subset", "8"]


def start(out: Path, *extra: str) -> subprocess.Popen[str]:
    """The CLI in a new process with stdout/stderr piped (not a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "random"}
    return subprocess.Popen([sys.executable, "-m", "hybridformer", *RUN, "--out-dir", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out, err


def losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_log(out) if "loss" in r]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """The same command in two separate processes (run side by side)."""
    outs = [tmp_path_factory.mktemp(f"run{i}") for i in (1, 2)]
    procs = [start(out) for out in outs]
    return [(out, finish(proc)[1]) for out, proc in zip(outs, procs)]


def test_same_seed_in_two_processes_logs_identical_losses(two_runs: list[tuple[Path, str]]) -> None:
    (a, _), (b, _) = two_runs
    assert [s for s, _ in losses(a)] == [1, 2, 3, 4]
    assert losses(a) == losses(b)  # bit-identical floats, head and all drawn from --train.seed


def test_piped_run_prints_summary_progress_and_closing(two_runs: list[tuple[Path, str]]) -> None:
    out, err = two_runs[0]
    assert "fine-tuning a 2-class classifier on task 'sentiment'" in err
    assert "64 train / 8 validation / 8 test examples; the built-in fixed stratified 80/10/10 split" in err
    assert "labels: rotten, fresh" in err and "attention full" in err
    assert "training: 4 steps" in err and f"outputs: {out}" in err
    progress = [line for line in err.splitlines() if line.startswith("step ")]
    assert [p.split()[1] for p in progress] == ["1/4", "2/4", "3/4", "4/4"]  # progress_every 0: each step
    assert all("loss " in p and "tok/s" in p and "ETA" in p for p in progress)
    assert "trained to step 4" in err and "deleted the checkpoints" in err and "resumed" not in err
    assert not (out / "checkpoints").exists()
    assert FinetuneConfig().train.progress_every <= 30  # piped runs print at least every 30 s by default


@pytest.mark.slow
def test_killed_run_resumes_in_a_new_process_with_the_same_losses(
    two_runs: list[tuple[Path, str]], tmp_path: Path
) -> None:
    proc = start(tmp_path, "--train.save_every", "1")
    deadline = time.monotonic() + 600
    while latest_checkpoint(tmp_path / "checkpoints") is None:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = int(latest_checkpoint(tmp_path / "checkpoints").name.split("-")[1])
    assert killed_at < 4
    _, err = finish(start(tmp_path, "--train.save_every", "1", "--train.resume", "true"))
    assert f"resumed from step {killed_at}" in err
    assert losses(tmp_path) == losses(two_runs[0][0])


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # --help
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_field_with_type_default_and_doc(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "finetune", "--help")
    assert code == 0
    assert "--train.lr float (default 5e-05): Peak learning rate of AdamW (reached after warmup)." in out
    assert "--train.resume bool (default False):" in out
    assert "--data.test_file str|None (default None): task=file: the test file" in out
    assert "--data.train_subset int|None (default None):" in out
    assert "--model.attention.window int|None (default None): Local window size" in out  # nested, partial
    assert "--train.out_dir (or --out-dir) str (default runs/finetune):" in out
    for name in ("finetune", "evaluate", "pretrain", "train-tokenizer"):
        code, out, _ = run_cli(capsys, name, "--help")
        cls = {"finetune": FinetuneConfig, "evaluate": EvaluateConfig}.get(name)
        if cls is None:
            from hybridformer.recipes import PretrainConfig, TokenizerConfig

            cls = PretrainConfig if name == "pretrain" else TokenizerConfig
        assert name in COMMANDS and code == 0
        for path in field_paths(cls):
            assert f"--{path} " in out or f"\n{path}: " in out, (name, path)  # a field, or a section heading
    _, out, _ = run_cli(capsys, "evaluate", "--help")
    assert "--model_dir (or --model-dir) str|None (required): Required: a classifier folder" in out
    assert "--scratch." not in out and "--model.scratch.attention.window int (default 64)" in run_cli(
        capsys, "pretrain", "--help")[1]


def test_a_required_field_left_out_is_one_error_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"^model_dir: is required \(a classifier folder"):
        load_config(EvaluateConfig)
    code, _, err = run_cli(capsys, "evaluate", "--split", "test")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("hybridformer evaluate: config error: --model-dir: is required")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["finetune", "--data.max_length", "1"], "config error: --data.max_length: must be >= 2"),
        (["finetune", "--train.lr", "fast"], "config error: --train.lr: expected a number"),
        (["finetune", "--data.task", "file"], "error: --data.train_file: task=file needs a training file"),
        (["finetune", "--data.task", "file", "--data.train_file", "no/such.csv"],
         "error: --data.train_file: no such file: no/such.csv"),
        (["finetune", "--data.task", "file", "--data.train_file", "{csv}", "--data.label_column", "verdict"],
         "error: --data.label_column: column 'verdict' not found in"),
        (["pretrain", "--max_length", "1"], "config error: --max_length: must be >= 2"),
    ],
)
def test_errors_name_the_flag_a_user_typed(argv: list[str], needle: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "mine.csv"
    data.write_text("text,label\ngood film,pos\nbad film,neg\n")
    argv = [a.replace("{csv}", str(data)) for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert code in (1, 2) and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert needle in err, err
