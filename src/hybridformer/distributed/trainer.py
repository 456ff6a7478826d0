"""`ParallelTrainer`: the Trainer's loop over a parallelised model, through its ``train_step`` seam.

Every rank runs the same loop over the same global batches (the batch sampler is seeded alike on
every rank, so no distributed sampler is needed); :meth:`ParallelTrainer.train_step` keeps this
rank's data-parallel slice of each batch and runs it, either as one forward/backward of the
objective (FSDP, TP) or through the pipeline schedule (PP). The step's loss is averaged over the
data-parallel ranks, so every rank logs the global loss.

Checkpoints are distributed (DCP, ``checkpoint.py``): model and optimizer shards from every rank,
plus the Trainer's own state (scheduler, data position, RNG, losses) from each rank; resuming them
through ``fit`` is not wired yet (the Trainer has no restore seam). Rank 0 writes the logs; the
other ranks log under ``<out_dir>/rank<r>`` without progress bars or TensorBoard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from hybridformer.distributed.checkpoint import save_distributed
from hybridformer.distributed.dims import ParallelDims
from hybridformer.distributed.pipeline import pipeline_step
from hybridformer.io import atomic_write
from hybridformer.training import Trainer, TrainConfig
from hybridformer.training.trainer import CHECKPOINT_DIR, StepOutput

__all__ = ["ParallelTrainer"]

TRAINER_STATE = "trainer_rank{rank}.pt"
"""Per-rank file of the Trainer state (without the optimizer, which DCP holds) in a checkpoint."""


def _rank_config(config: TrainConfig) -> TrainConfig:
    """Rank 0 keeps the config; other ranks write their logs apart, quietly."""
    rank = dist.get_rank()
    if rank == 0:
        return config
    out_dir = str(Path(config.out_dir) / f"rank{rank}")
    return dataclasses.replace(config, out_dir=out_dir, progress_bar=False, tensorboard=False)


class ParallelTrainer(Trainer):
    """:class:`~hybridformer.training.Trainer` over ``model`` parallelised on ``mesh``.

    Args:
        model: the parallelised model (``parallelize``), or this rank's pipeline stage.
        objective: ``objective(model, batch) -> LossOutput``; unused by a pipeline, whose loss is the
            schedule's ``loss_fn``.
        mesh: the mesh of :meth:`ParallelDims.build_mesh`.
        schedule: the pipeline schedule (``build_schedule``) when pp > 1, else None.
        Other arguments as :class:`Trainer`'s. ``config.batch_size`` is the global batch size.

    Raises:
        ValueError: a setting this trainer cannot honour (named).
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Any,
        train_data: Any,
        config: TrainConfig,
        collate_fn: Any,
        *,
        mesh: Any,
        schedule: Any | None = None,
        **kwargs: Any,
    ) -> None:
        dp = ParallelDims.dp_mesh(mesh).size()
        if config.batch_size % dp:
            raise ValueError(f"train.batch_size: {config.batch_size} must be a multiple of the data-parallel degree {dp}")
        if config.clip_norm and (mesh["tp"].size() > 1 or mesh["pp"].size() > 1):
            raise ValueError(
                "train.clip_norm: gradient clipping over tensor- or pipeline-parallel gradients is not supported "
                "yet (their norm spans several meshes); set train.clip_norm null"
            )
        if config.resume or config.resume_from:
            raise ValueError(
                "train.resume: resuming a parallel run through the Trainer is not wired yet; load the DCP "
                "checkpoint with hybridformer.distributed.checkpoint.load_distributed"
            )
        if schedule is not None and config.grad_accum != 1:
            raise ValueError("train.grad_accum: must be 1 with pipeline parallelism (use parallel.microbatches)")
        super().__init__(model, objective, train_data, _rank_config(config), collate_fn, **kwargs)
        self.checkpoint_dir = Path(config.out_dir) / CHECKPOINT_DIR  # one DCP folder for all ranks
        self.mesh = mesh
        self.schedule = schedule
        self.dp = dp
        self.dp_rank = ParallelDims.dp_rank(mesh)

    def _shard(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """This rank's data-parallel slice of a global batch."""
        return {
            k: v.chunk(self.dp)[self.dp_rank] if isinstance(v, Tensor) and v.dim() > 0 else v for k, v in batch.items()
        }

    def train_step(self, micro_batches: Sequence[Mapping[str, Any]]) -> StepOutput:
        """Forward and backward of this rank's slice of every micro-batch; losses averaged over DP."""
        n = len(micro_batches)
        losses: list[Tensor] = []
        for batch in micro_batches:
            local = self._to_device(self._shard(batch))
            if self.schedule is not None:
                loss = pipeline_step(self.schedule, local, self.mesh["pp"]).loss
            else:
                out = self.objective(self.model, local)
                (out.loss / n).backward()
                loss = out.loss.detach()
            losses.append(loss.to(torch.float64))
        micro = torch.stack(losses)
        # TP and PP ranks hold the same losses: the world mean is the mean over data-parallel ranks.
        dist.all_reduce(micro)
        return StepOutput(micro_losses=micro / dist.get_world_size())

    def _save(self, optimizer: torch.optim.Optimizer, scheduler: Any, losses: list[float]) -> Path:
        path = self.checkpoint_dir / f"step-{self.step}"
        save_distributed(path, self.model, optimizer)
        state = {k: v for k, v in self._state(optimizer, scheduler, losses).items() if k != "optimizer"}
        atomic_write(path / TRAINER_STATE.format(rank=dist.get_rank()), lambda tmp: torch.save(state, tmp))
        dist.barrier()
        return path
