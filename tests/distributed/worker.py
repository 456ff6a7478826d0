"""torchrun worker of the distributed tests: runs a list of cases, rank 0 writes their results as JSON.

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed/worker.py OUT_DIR CASE [CASE ...]

A case name is one of ``toy.CASES`` (a parallel run checked against the in-process single-process
reference), ``ckpt`` (DCP save under dp=2, resume under dp=2 and under tp=2) or ``die`` (last: rank 1
exits with code 3 while rank 0 waits in a collective; torchrun must tear the job down).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).parent))
import toy  # noqa: E402
from cases import CASES  # noqa: E402

from hybridformer.distributed import ParallelDims, init_distributed, parallelize  # noqa: E402
from hybridformer.distributed.parallelize import materialize  # noqa: E402
from hybridformer.distributed.checkpoint import load_distributed, save_distributed  # noqa: E402
from hybridformer.distributed.parallelize import find_blocks  # noqa: E402
from hybridformer.distributed.pipeline import TextClassifierStage, build_schedule, pipeline_step  # noqa: E402
from hybridformer.training import Callback  # noqa: E402


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


class Run:
    """A case's parallel model, optimizer and step function on this rank."""

    def __init__(self, case: toy.Case, model: toy.TextClassifier) -> None:
        self.case = case
        dims = ParallelDims(case.dp_shard, case.dp_replicate, case.tp, case.pp)
        self.mesh = dims.build_mesh("cpu")
        self.dp_rank = ParallelDims.dp_rank(self.mesh)
        self.schedule = None
        if case.pp > 1:
            pp_mesh = self.mesh["pp"]
            self.module = TextClassifierStage(model, pp_mesh.get_local_rank(), case.pp)
            parallelize(self.module, self.mesh, pipelined=True, activation_checkpointing=case.ac)
            self.schedule = build_schedule(
                self.module, pp_mesh, torch.device("cpu"), n_microbatches=case.microbatches,
                microbatch_size=2, seq_len=toy.SEQ, schedule=case.schedule,
            )
        else:
            self.module = parallelize(model, self.mesh, activation_checkpointing=case.ac)
        if not case.sync_selection:
            for _, block in find_blocks(self.module):
                if case.selection == "scorer":
                    block.attention.scorer._forward_hooks.clear()
                else:
                    block.attention.pooled.head_sum = None
        self.optimizer = toy.make_optimizer(self.module)
        self.indices: list = []  # every block call's selected global tokens, in call order
        for _, block in find_blocks(self.module):
            block.register_forward_hook(lambda m, i, out: self.indices.append(out.global_indices.tolist()))

    def step(self, step: int) -> float:
        case = self.case
        batch = {k: v.chunk(case.dp)[self.dp_rank] for k, v in toy.global_batch(case, step).items()}
        if self.schedule is not None:
            loss = pipeline_step(self.schedule, batch, self.mesh["pp"]).loss
        else:
            torch.manual_seed(toy.chunk_seed(step, self.dp_rank))
            loss = toy.loss_of(self.module, batch)
            loss.backward()
            loss = loss.detach()
        self.optimizer.step()
        self.optimizer.zero_grad()
        # TP and PP ranks hold the same loss: the world mean is the mean over data-parallel ranks.
        dist.all_reduce(loss)
        return float(loss) / dist.get_world_size()

    def params(self) -> dict[str, torch.Tensor]:
        # named as in the unwrapped model (activation checkpointing adds a wrapper level)
        return {name.replace("_checkpoint_wrapped_module.", ""): _full(p.detach()) for name, p in self.module.named_parameters()}


def _compare(params: dict[str, torch.Tensor], reference: toy.TextClassifier) -> float:
    """Largest relative parameter difference (norm of difference / norm of the reference)."""
    ref = dict(reference.named_parameters())
    return max(float((p - ref[n]).norm() / ref[n].norm().clamp_min(1e-12)) for n, p in params.items())


def run_case(case: toy.Case) -> dict:
    model = toy.build_model(case)
    ref_losses, reference = toy.reference_run(case, model, range(case.steps))
    run = Run(case, toy.build_model(case))
    losses = [run.step(s) for s in range(case.steps)]
    # every rank checks its own parameters (its stage, its shards) and its TP group's selections
    tp_group = run.mesh["tp"].get_group()
    selections = [None] * run.mesh["tp"].size()
    dist.all_gather_object(selections, run.indices, group=tp_group)
    params = run.params()
    scorer = {n: p for n, p in params.items() if ".scorer." in n}
    mine = (_compare(params, reference), all(g == selections[0] for g in selections), bool(run.indices),
            _compare(scorer, reference) if scorer else 0.0)
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, mine)
    return {
        "losses": losses,
        "reference": ref_losses,
        "param_rel_diff": max(r[0] for r in ranks),
        "scorer_rel_diff": max(r[3] for r in ranks),
        "reference_moved": _compare(dict(model.named_parameters()), reference),
        "tp_same_selection": all(r[1] for r in ranks),
        "selection_nonempty": all(r[2] for r in ranks),
    }


def run_checkpoint(out: Path) -> dict:
    """dp=2 for 5 steps, saved after 3; resume from step 3 under dp=2 and under tp=2."""
    case = toy.Case("ckpt_dp2", dp_shard=2)
    path = out / "ckpt_dp2_step3"
    run = Run(case, toy.build_model(case))
    losses = []
    for s in range(case.steps):
        losses.append(run.step(s))
        if s == 2:
            save_distributed(path, run.module, run.optimizer, extra={"step": 3, "losses": losses})
    result = {"uninterrupted": losses}
    for name, resumed_case in (("same_mesh", case), ("tp2", toy.Case("ckpt_tp2", tp=2, batch_size=4))):
        run = Run(resumed_case, toy.build_model(resumed_case, seed=123))  # other weights, overwritten by the load
        extra = load_distributed(path, run.module, run.optimizer)
        result[name] = extra["losses"] + [run.step(s) for s in range(extra["step"], case.steps)]
    result["path"] = str(path)
    return result


def _parallel_trainer(dims: ParallelDims, model, data: list, collate, cfg, callbacks=()):
    """A ParallelTrainer of ``model`` on a mesh of ``dims``: FSDP/TP through ``parallelize``, or a
    2-stage pipeline (2 micro-batches of 2) when ``dims.pp`` > 1."""
    from hybridformer.distributed.trainer import ParallelTrainer

    mesh = dims.build_mesh("cpu")
    if dims.pp == 1:
        return ParallelTrainer(parallelize(model, mesh), toy.OBJECTIVE, data, cfg, collate, mesh=mesh, callbacks=callbacks)
    stage = TextClassifierStage(model, mesh["pp"].get_local_rank(), dims.pp)
    schedule = build_schedule(stage, mesh["pp"], torch.device("cpu"), n_microbatches=2, microbatch_size=2, seq_len=toy.SEQ)
    return ParallelTrainer(stage, toy.OBJECTIVE, data, cfg, collate, mesh=mesh, schedule=schedule, callbacks=callbacks)


def run_trainer(out: Path) -> dict:
    """ParallelTrainer under dp=2 and under pp=2 against the plain Trainer in one process; then
    resuming (``_trainer_resume``) and clipping (``_trainer_clip``) under parallelism."""
    from hybridformer.training import Trainer, TrainConfig

    case = toy.Case("trainer", batch_size=4)
    data = [
        {k: v[i] for k, v in toy.global_batch(case, step).items()} for step in range(3) for i in range(4)
    ]

    def collate(examples: list[dict]) -> dict:
        return {k: torch.stack([e[k] for e in examples]) for k in examples[0]}

    def config(name: str) -> TrainConfig:
        return TrainConfig(
            lr=toy.LR, max_steps=4, batch_size=4, clip_norm=None, precision="fp32", device="cpu",
            warmup_ratio=0.0, out_dir=str(out / name), progress_bar=False, tensorboard=False, log_every=1,
        )

    rank = dist.get_rank()
    reference = Trainer(toy.build_model(case), toy.OBJECTIVE, data, config(f"ref{rank}"), collate).fit()
    result = {"reference": reference.losses, "reference_checkpoint": str(reference.checkpoint_path)}
    trainer = _parallel_trainer(ParallelDims(dp_shard=2), toy.build_model(case), data, collate, config("dp2"))
    result["dp2"] = trainer.fit().losses
    trainer = _parallel_trainer(ParallelDims(pp=2), toy.build_model(case), data, collate, config("pp2"))
    result["pp2"] = trainer.fit().losses
    result["checkpoint"] = str(trainer.latest_checkpoint())
    result.update(_trainer_resume(case, data, collate, config))
    result.update(_trainer_clip(case, data, collate, config))
    return result


def _trainer_clip(case: toy.Case, data: list, collate, config) -> dict:
    """Gradient clipping (a norm far below the gradients', so every step clips) in one process and
    under dp=2, tp=2 and pp=2: the losses each logs."""
    from hybridformer.training import Trainer

    def clipped(name: str):
        return dataclasses.replace(config(name), clip_norm=1e-2)

    reference = Trainer(toy.build_model(case), toy.OBJECTIVE, data, clipped(f"clipref{dist.get_rank()}"), collate)
    result = {"clip_reference": reference.fit().losses}
    for name, dims in (("dp2", ParallelDims(dp_shard=2)), ("tp2", ParallelDims(tp=2)), ("pp2", ParallelDims(pp=2))):
        trainer = _parallel_trainer(dims, toy.build_model(case), data, collate, clipped(f"clip_{name}"))
        result[f"clip_{name}"] = trainer.fit().losses
    return result


class _StopAt(Callback):
    """Stops the run after optimizer step ``step`` (the Trainer then saves a checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, step: int, metrics: dict) -> None:
        if step == self.step:
            trainer.request_stop()


def _trainer_resume(case: toy.Case, data: list, collate, config) -> dict:
    """dp=2 and pp=2 runs stopped after step 2, then resumed with ``train.resume`` by a new trainer
    over a model built with other weights (the checkpoint overwrites them): the losses they log."""
    result = {}
    for name, dims in (("dp2", ParallelDims(dp_shard=2)), ("pp2", ParallelDims(pp=2))):
        cfg = config(f"{name}_resume")  # keep_last 2 (the default): steps 2 and 4 remain
        first = _parallel_trainer(dims, toy.build_model(case), data, collate, cfg, [_StopAt(2)])
        stopped = first.fit()
        resumed = _parallel_trainer(dims, toy.build_model(case, seed=123), data, collate,
                                    dataclasses.replace(cfg, resume=True)).fit()
        result[f"{name}_stopped"] = stopped.losses
        result[f"{name}_resumed"] = resumed.losses
        result[f"{name}_checkpoints"] = sorted(p.name for p in first.checkpoint_dir.iterdir())
    return result


def run_meta() -> dict:
    """A meta-device build with sharded parameters on CPU: materialize must refuse, naming why."""
    result = {}
    for name, dims in (("tp2", ParallelDims(tp=2)), ("dp2", ParallelDims(dp_shard=2))):
        with torch.device("meta"):
            model = toy.memory_model()
        parallelize(model, dims.build_mesh("cpu"))
        try:
            materialize(model, "cpu", seed=0)
            result[name] = "materialised"
        except ValueError as err:
            result[name] = str(err)
    return result


def run_memory() -> dict:
    """Measured bytes per rank of one step under dp_shard=2 and under tp=2 (largest rank)."""
    result = {}
    for name, dims in (("dp2", ParallelDims(dp_shard=2)), ("tp2", ParallelDims(tp=2))):
        mesh = dims.build_mesh("cpu")
        measured = toy.measure_step_memory(parallelize(toy.memory_model(), mesh))
        ranks = [None] * dist.get_world_size()
        dist.all_gather_object(ranks, measured)
        result[name] = {k: max(r[k] for r in ranks) for k in measured}
    return result


def main() -> None:
    out, names = Path(sys.argv[1]), sys.argv[2:]
    init_distributed(timeout_s=60)
    results = {}
    for name in names:
        if name == "die":
            results_file = out / f"results_{dist.get_world_size()}.json"
            if dist.get_rank() == 0:
                results_file.write_text(json.dumps(results))
            dist.barrier()
            if dist.get_rank() == 1:
                os._exit(3)
            dist.barrier()  # rank 1 is gone: torchrun must stop this rank, or the pg timeout must
            return
        special = {"ckpt": lambda: run_checkpoint(out), "memory": run_memory, "trainer": lambda: run_trainer(out),
                   "meta": run_meta}
        results[name] = special[name]() if name in special else run_case(CASES[name])
    if dist.get_rank() == 0:
        (out / f"results_{dist.get_world_size()}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
