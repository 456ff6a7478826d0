"""3D parallelism on real torchrun processes (gloo, CPU) against the single-process reference.

One launch per world size (2, 4, 8 processes) runs every case of that size (``cases.py``) and the
checkpoint round trip; each launch costs ~10-30 s here, the whole file about a minute.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import toy  # noqa: E402
from cases import CASES  # noqa: E402

from hybridformer.distributed import ParallelDims  # noqa: E402
from hybridformer.distributed.checkpoint import export_pretrained, load_distributed  # noqa: E402
from hybridformer.distributed.plan import PlanConfig, PlanModel, memory  # noqa: E402
from hybridformer.models import TextClassifier  # noqa: E402
from hybridformer.registry import save_model  # noqa: E402
from hybridformer.training.checkpoint import MODEL_FILE  # noqa: E402

WORKER = Path(__file__).parent / "worker.py"
SRC = Path(__file__).resolve().parents[2] / "src"
LAUNCH_TIMEOUT_S = 240
"""A launch that takes longer has hung: the test fails instead of blocking the suite."""
# The 2-process launch also checks checkpoints, measures memory and ends with rank 1 dying ("die" must stay last).
LAUNCHES = {
    2: [n for n, c in CASES.items() if c.world == 2] + ["ckpt", "memory", "trainer", "meta", "die"],
    4: [n for n, c in CASES.items() if c.world == 4],
    8: [n for n, c in CASES.items() if c.world == 8],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, args: list[str], timeout: float = LAUNCH_TIMEOUT_S, extra: list[str] = ()) -> tuple:
    """Run ``python -m torch.distributed.run`` on localhost; return (completed process, seconds)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), *extra,
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args,
    ]
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def launches(tmp_path_factory):
    """world size -> (results dict, completed process, seconds), each launched on first use."""
    done: dict[int, tuple] = {}

    def get(world: int) -> tuple:
        if world not in done:
            out = tmp_path_factory.mktemp(f"world{world}")
            proc, seconds = torchrun(world, [str(WORKER), str(out), *LAUNCHES[world]])
            results_file = out / f"results_{world}.json"
            if not results_file.is_file():
                pytest.fail(f"torchrun x{world} wrote no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
            done[world] = (json.loads(results_file.read_text()), proc, seconds)
        return done[world]

    return get


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.sync_selection])
def test_case_matches_single_process(launches, name):
    case = CASES[name]
    result = launches(case.world)[0][name]
    for step, (got, want) in enumerate(zip(result["losses"], result["reference"], strict=True)):
        assert got == pytest.approx(want, rel=case.rtol), f"{name}: loss of step {step}"
    assert result["reference_moved"] > 1e-3, "the reference did not train: the comparison would be empty"
    assert result["param_rel_diff"] < case.param_rtol, f"{name}: weights after {case.steps} steps"
    assert result["tp_same_selection"] and result["selection_nonempty"]


def test_tp_without_the_scorer_gradient_all_reduce_drifts(launches):
    """Each TP rank's scorer gradient covers only its own heads: unsynced, the scorer learns wrong."""
    result = launches(2)[0]["tp2_scorer_unsynced"]
    assert result["scorer_rel_diff"] > 1e-3


def test_tp_without_the_pooled_importance_sum_picks_different_sets(launches):
    """Each TP rank holds half the heads: without summing the keys' importance over the ranks, they
    rank keys by different heads and pick different sets."""
    result = launches(2)[0]["tp2_pooled_unsummed"]
    assert not result["tp_same_selection"]


def test_checkpoint_resume_same_mesh_and_resharded(launches):
    result = launches(2)[0]["ckpt"]
    want = result["uninterrupted"]
    # same mesh: the same reductions in the same order, so the same losses
    assert result["same_mesh"] == pytest.approx(want, rel=1e-6)
    # dp=2 -> tp=2: other reduction order
    assert result["tp2"] == pytest.approx(want, rel=1e-5)


def test_checkpoint_two_ranks_to_one_process_and_export(launches, tmp_path):
    result = launches(2)[0]["ckpt"]
    case = toy.Case("ckpt_dp2", dp_shard=2)
    model = toy.build_model(case, seed=99)
    optimizer = toy.make_optimizer(model)
    extra = load_distributed(result["path"], model, optimizer)  # no process group: one process
    losses, _ = toy.reference_run(case, model, range(extra["step"], case.steps), optimizer)
    assert extra["losses"] + losses == pytest.approx(result["uninterrupted"], rel=1e-5)

    exported = TextClassifier.from_pretrained(export_pretrained(result["path"], toy.build_model(case, 7), tmp_path / "m", save_model))
    loaded = toy.build_model(case, seed=8)
    load_distributed(result["path"], loaded)
    batch = toy.global_batch(case, 0)
    with torch.no_grad():
        want = loaded.eval()(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = exported.eval()(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, want)


def test_parallel_trainer_matches_the_trainer(launches):
    """ParallelTrainer's train_step (dp=2 slices, pp=2 schedule) inside Trainer.fit, against the
    plain Trainer in one process; its final DCP checkpoint loads into the full model."""
    result = launches(2)[0]["trainer"]
    assert result["dp2"] == pytest.approx(result["reference"], rel=1e-5)
    assert result["pp2"] == pytest.approx(result["reference"], rel=1e-5)
    model = toy.build_model(toy.Case("trainer"), seed=5)
    load_distributed(result["checkpoint"], model)  # both stages' shards: the whole model
    want = load_file(Path(result["reference_checkpoint"]) / MODEL_FILE)
    for name, param in model.named_parameters():
        assert (param - want[name]).norm() <= 1e-5 * want[name].norm(), name


@pytest.mark.parametrize("name", ["dp2", "pp2"])
def test_parallel_trainer_resumes_exactly(launches, name):
    """A dp=2 / pp=2 run stopped after step 2 and resumed by a new trainer (other initial weights,
    overwritten by the checkpoint) logs the uninterrupted run's losses; both checkpoints are complete."""
    result = launches(2)[0]["trainer"]
    assert result[f"{name}_stopped"] == result[name][:2]
    assert result[f"{name}_resumed"] == result[name]  # bit for bit, as a single-process resume
    assert result[f"{name}_checkpoints"] == ["step-00000002", "step-00000004"]


@pytest.mark.parametrize("name", ["dp2", "tp2", "pp2"])
def test_parallel_trainer_clips_by_the_whole_models_norm(launches, name):
    """clip_norm under dp/tp/pp clips by the norm of the whole model's gradient (shards and stages
    together), as the single-process Trainer does; the clip is active (it changes the losses)."""
    result = launches(2)[0]["trainer"]
    assert result["clip_reference"][1:] != pytest.approx(result["reference"][1:], rel=1e-3)
    assert result[f"clip_{name}"] == pytest.approx(result["clip_reference"], rel=1e-5)


def test_materialize_refuses_sharded_parameters_on_cpu(launches):
    for name in ("tp2", "dp2"):
        assert "sharded parameters on cpu" in launches(2)[0]["meta"][name]


def test_a_dead_rank_stops_the_job(launches):
    results, proc, seconds = launches(2)
    assert set(results) == set(LAUNCHES[2]) - {"die"}, "every case ran before the rank died"
    assert proc.returncode != 0
    assert "exitcode  : 3" in proc.stderr and "rank      : 1" in proc.stderr, proc.stderr[-2000:]
    assert seconds < LAUNCH_TIMEOUT_S


def _planned(parallel: ParallelDims) -> dict[str, float]:
    """What `hybridformer plan` says one step of the memory model takes per rank (fp32, CPU)."""
    m = toy.MEMORY_MODEL
    shape = PlanModel(m["d_model"], m["n_layers"], m["n_heads"], m["d_ff"], m["vocab_size"], attended_keys=20)
    cfg = PlanConfig(
        model="custom", custom=shape, seq_len=m["max_positions"], global_batch=toy.MEMORY_BATCH * parallel.dp,
        microbatches=1, parallel=parallel, precision="fp32",
    )
    est = memory(cfg)
    return {"params": est.params, "grads": est.grads, "optimizer": est.optimizer, "activations": est.activations}


def _assert_within_25_percent(measured: dict[str, int], planned: dict[str, float]) -> None:
    for key in ("params", "grads", "optimizer", "activations"):
        assert planned[key] == pytest.approx(measured[key], rel=0.25), key
    assert sum(planned.values()) == pytest.approx(sum(measured.values()), rel=0.25)


def test_plan_memory_matches_a_measured_single_process_step():
    _assert_within_25_percent(toy.measure_step_memory(toy.memory_model()), _planned(ParallelDims()))


@pytest.mark.parametrize("name, parallel", [("dp2", ParallelDims(dp_shard=2)), ("tp2", ParallelDims(tp=2))])
def test_plan_memory_matches_measured_ranks(launches, name, parallel):
    _assert_within_25_percent(launches(2)[0]["memory"][name], _planned(parallel))
