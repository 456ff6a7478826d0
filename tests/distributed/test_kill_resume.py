"""A parallel job killed with SIGKILL and launched again resumes exactly (real torchrun, gloo, CPU).

`hybridformer train` runs tp=2 under torchrun; once a checkpoint is COMPLETE the whole process group
(the torchrun agent and both ranks) is killed mid-run, as a preempted node would be, and the same
command is launched again with ``--train.resume true``. The resumed job must end where one
uninterrupted job ends: the same loss at every step and bit-identical exported weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from hybridformer.models import TextClassifier

from test_parallel import LAUNCH_TIMEOUT_S, SRC, free_port
from test_train_command import TINY, tiny_pretrained

STEPS, SAVE_EVERY = 24, 4


def _command(tiny: Path, out: Path, *extra: str) -> list[str]:
    args = [a for a in TINY]
    args[args.index("--train.max_steps") + 1] = str(STEPS)
    args[args.index("--data.train_subset") + 1] = "256"  # 32 batches of 8: no epoch boundary in the run
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "hybridformer", "train", *args, "--model.init_from", str(tiny), "--parallel.tp", "2",
        "--train.save_every", str(SAVE_EVERY), "--train.keep_checkpoints", "true", "--out-dir", str(out), *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str]) -> str:
    """Run a launch to its end; its stdout and stderr."""
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts each rank in a session of its own, so a process
    group kill would miss them)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _complete_steps(out: Path) -> list[int]:
    root = out / "checkpoints"
    return sorted(int(p.parent.name.split("-")[1]) for p in root.glob("step-*/COMPLETE")) if root.is_dir() else []


def test_killed_parallel_job_resumes_to_the_uninterrupted_result(tmp_path: Path):
    tiny = tiny_pretrained(tmp_path / "tiny")
    _run(_command(tiny, tmp_path / "straight"))

    out = tmp_path / "killed"
    job = subprocess.Popen(_command(tiny, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while not _complete_steps(out) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victims = [job.pid, *_descendants(job.pid)]
    assert len(victims) >= 3 or job.poll() is not None, f"expected the agent and two ranks, found {victims}"
    for pid in victims:  # the agent and both ranks at once, with no chance to clean up
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL, f"the job ended before it could be killed: {job.stderr.read()[-3000:]}"
    done = _complete_steps(out)
    assert done and done[-1] < STEPS, done
    assert not (out / "metrics.json").exists()

    log = _run(_command(tiny, out, "--train.resume", "true"))
    assert f"resumed from step {done[-1]} " in log, log[-3000:]  # it continued, it did not start over
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    assert len(resumed["losses"]) == STEPS
    assert resumed["losses"] == straight["losses"]  # exact: same batches, RNG and all-reduce order
    want = dict(TextClassifier.from_pretrained(straight["model_dir"]).named_parameters())
    for name, got in TextClassifier.from_pretrained(resumed["model_dir"]).named_parameters():
        assert torch.equal(got, want[name]), name
