"""Parallel fine-tuning under torchrun: the finetune recipe's model and data on a DeviceMesh.

    torchrun --nproc_per_node 2 -m hybridformer train --data.task bbc --parallel.tp 2

Every rank builds the classifier (from the pretrained folder), keeps its part (pipeline stage,
tensor-parallel and FSDP shards), trains with :class:`~hybridformer.distributed.trainer.ParallelTrainer`
and saves a DCP checkpoint; rank 0 then exports it to ``<out_dir>/model`` (the single-file format of
``save_pretrained`` that ``evaluate`` and serving load) and evaluates the exported model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist

from hybridformer.config import check, save_config
from hybridformer.data import LengthBucketBatchSampler, TextCollator, token_lengths
from hybridformer.io import write_json
from hybridformer.losses import ClassificationObjective
from hybridformer.recipes.finetune import CONFIG_FILE, METRICS_FILE, MODEL_DIR, FinetuneConfig
from hybridformer.recipes.metrics import evaluate_classifier
from hybridformer.data.tokenizer import resolve_tokenizer
from hybridformer.recipes.model import build_classifier
from hybridformer.recipes.task_data import load_task_data

__all__ = ["ParallelConfig", "TrainParallelConfig", "train_parallel"]


@dataclass
class ParallelConfig:
    """How the job splits; the degrees multiply to the world size (torchrun's processes)."""

    dp_shard: int = -1
    """FSDP degree; -1 = whatever the other degrees leave of the world size."""
    dp_replicate: int = 1
    """Replicated data-parallel degree (HSDP with dp_shard > 1)."""
    tp: int = 1
    """Tensor-parallel degree (keep it within a node)."""
    pp: int = 1
    """Pipeline stages (every batch is then padded to data.max_length)."""
    schedule: Literal["1f1b", "gpipe"] = "1f1b"
    """Pipeline schedule."""
    microbatches: int = 1
    """Pipeline microbatches per data-parallel rank; must divide batch_size / dp."""
    activation_checkpointing: bool = False
    """Recompute every block in the backward pass instead of keeping its activations."""

    def __post_init__(self) -> None:
        check(self.dp_shard == -1 or self.dp_shard >= 1, "parallel.dp_shard", f"must be >= 1 or -1, got {self.dp_shard}")
        check(self.microbatches >= 1, "parallel.microbatches", f"must be >= 1, got {self.microbatches}")

    def dims(self, world_size: int):
        """The :class:`ParallelDims` for ``world_size`` processes (dp_shard = -1 filled in)."""
        from hybridformer.distributed import ParallelDims

        dp_shard = self.dp_shard
        if dp_shard == -1:
            rest = self.dp_replicate * self.tp * self.pp
            if world_size % rest:
                raise ValueError(
                    f"parallel: dp_replicate={self.dp_replicate} x tp={self.tp} x pp={self.pp} = {rest} does not "
                    f"divide the world size {world_size}"
                )
            dp_shard = world_size // rest
        dims = ParallelDims(dp_shard=dp_shard, dp_replicate=self.dp_replicate, tp=self.tp, pp=self.pp)
        dims.validate(world_size)
        return dims


@dataclass
class TrainParallelConfig(FinetuneConfig):
    """A fine-tuning run (see FinetuneConfig) plus its parallel layout. Pruning and gate
    distillation stay single-process features (finetune)."""

    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """Degrees of data, tensor and pipeline parallelism and the pipeline schedule."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.prune.enabled, "prune.enabled", "pruning runs in finetune (one process), not in train")
        check(not self.gate_distill.enabled, "gate_distill.enabled", "gate distillation runs in finetune, not in train")


def train_parallel(config: TrainParallelConfig) -> dict | None:
    """Run ``config`` on this rank; rank 0 returns the metrics record, the other ranks None."""
    from hybridformer.distributed import init_distributed, parallelize
    from hybridformer.distributed.checkpoint import export_pretrained
    from hybridformer.registry import save_model
    from hybridformer.distributed.pipeline import TextClassifierStage, build_schedule
    from hybridformer.distributed.trainer import ParallelTrainer

    device = init_distributed()
    dims = config.parallel.dims(dist.get_world_size())
    mesh = dims.build_mesh(device.type)
    splits = load_task_data(config.data)
    tokenizer = resolve_tokenizer(config.model.tokenizer, config.model.init_path())
    max_length = config.data.max_length
    # Pipeline stages exchange fixed-shape buffers: pad every batch to max_length.
    collate = TextCollator(tokenizer, max_length=max_length, pad_to_multiple_of=max_length if dims.pp > 1 else None)
    train = config.train
    per_rank = train.batch_size // dims.dp
    sampler = LengthBucketBatchSampler(
        token_lengths(splits.train, tokenizer, max_length), train.batch_size, drop_last=True, seed=train.seed
    )
    torch.manual_seed(train.seed)  # the fresh head: the same on every rank, and run to run
    model = build_classifier(config.model, splits.train.label_names).to(device)
    schedule = None
    if dims.pp > 1:
        if per_rank % config.parallel.microbatches:
            raise ValueError(
                f"parallel.microbatches: {config.parallel.microbatches} must divide the per-rank batch "
                f"train.batch_size / dp = {per_rank}"
            )
        stage = TextClassifierStage(model, mesh["pp"].get_local_rank(), dims.pp)
        module = parallelize(stage, mesh, pipelined=True, activation_checkpointing=config.parallel.activation_checkpointing)
        schedule = build_schedule(
            module, mesh["pp"], device, n_microbatches=config.parallel.microbatches,
            microbatch_size=per_rank // config.parallel.microbatches, seq_len=max_length,
            schedule=config.parallel.schedule,
        )
    else:
        module = parallelize(model, mesh, activation_checkpointing=config.parallel.activation_checkpointing)
    trainer = ParallelTrainer(
        module, ClassificationObjective(), splits.train, train, collate, mesh=mesh, schedule=schedule,
        batch_sampler=sampler,
    )
    result = trainer.fit()
    record = None
    if dist.get_rank() == 0:
        out = Path(train.out_dir)
        model_dir = out / MODEL_DIR
        exported = build_classifier(config.model, splits.train.label_names)  # weights loaded over it
        export_pretrained(result.checkpoint_path, exported, model_dir, save_model)
        tokenizer.save_pretrained(str(model_dir))
        save_config(config, out / CONFIG_FILE)
        metrics = {s: evaluate_classifier(exported, splits[s], collate, config.data.eval_batch_size) for s in config.eval_splits}
        record = {
            "task": config.data.task,
            "world_size": dist.get_world_size(),
            "parallel": vars(dims),
            "losses": result.losses,
            **{split: m.to_dict() for split, m in metrics.items()},
            "model_dir": str(model_dir),
        }
        write_json(out / METRICS_FILE, record)
    dist.barrier()
    dist.destroy_process_group()
    return record
