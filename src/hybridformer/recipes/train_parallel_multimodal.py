"""Parallel multimodal pretraining under torchrun: the ``pretrain --model tiny|DIR`` recipe on a DeviceMesh.

    torchrun --nproc_per_node 4 -m hybridformer train --model tiny --objectives itc,itm,caption \\
        --parallel.tp 2 --out-dir runs/mm-tp2

Every rank builds the model and the objective (the same weights under ``train.seed``), wraps them as
one :class:`~hybridformer.distributed.parallelize_multimodal.TrainingModule`, keeps its shards (FSDP2
over the data-parallel ranks, the tensor-parallel plans of the text encoder and the decoder) and
trains with :class:`~hybridformer.distributed.trainer.ParallelTrainer`. The contrastive loss gathers
its embeddings and ITM draws its hard negatives across the data-parallel group. Rank 0 exports the
final DCP checkpoint to ``<out_dir>/model`` (``MultimodalModel.from_pretrained`` loads it). Pipeline
parallelism is refused: the model's encoders and decoder are no single chain of blocks.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from hybridformer.config import check, save_config
from hybridformer.io import write_json
from hybridformer.recipes.multimodal_common import load_model, task_data, tokenizer
from hybridformer.recipes.multimodal_pretrain import MMPretrainConfig, build_pretrain_objective
from hybridformer.recipes.train_parallel import ParallelConfig
from hybridformer.registry import save_model

__all__ = ["MMTrainParallelConfig", "train_parallel_multimodal"]


@dataclass
class MMTrainParallelConfig(MMPretrainConfig):
    """A multimodal pretraining run (see MMPretrainConfig) plus its parallel layout (dp and tp)."""

    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """Degrees of data and tensor parallelism (pipeline parallelism is not offered for this model)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.parallel.pp == 1, "parallel.pp",
              f"pipeline parallelism is not supported for the multimodal model (its encoders and decoder are no "
              f"single chain of blocks), got pp={self.parallel.pp}; use parallel.dp_shard, parallel.dp_replicate "
              f"and parallel.tp")
        check(not self.momentum.enabled, "momentum.enabled",
              "momentum distillation is not parallelised; run it in one process with hybridformer pretrain")


def train_parallel_multimodal(config: MMTrainParallelConfig) -> dict | None:
    """Run ``config`` on this rank; rank 0 returns the metrics record, the other ranks None."""
    from hybridformer.distributed import init_distributed
    from hybridformer.distributed.parallelize_multimodal import (
        TrainingModule, export_training_module, parallelize_multimodal, run_training_module,
    )
    from hybridformer.distributed.trainer import ParallelTrainer

    device = init_distributed()
    dims = config.parallel.dims(dist.get_world_size())
    mesh = dims.build_mesh(device.type)
    tok = tokenizer()
    train_data, _, collate, _ = task_data("pretrain", config.data, tok)

    def build() -> TrainingModule:
        model = load_model(config.model, decoder_attention=config.decoder_attention)
        return TrainingModule(model, build_pretrain_objective(config.objectives, tok, config.weights))

    torch.manual_seed(config.train.seed)  # the same weights on every rank, and as `pretrain` draws them
    module = parallelize_multimodal(build().to(device), mesh)
    trainer = ParallelTrainer(module, run_training_module, train_data, config.train, collate, mesh=mesh)
    result = trainer.fit()
    record = None
    if dist.get_rank() == 0:
        out = Path(config.train.out_dir)
        model_dir = out / "model"
        save_model(export_training_module(result.checkpoint_path, build()), model_dir, tokenizer=tok)
        if not config.train.keep_checkpoints:
            shutil.rmtree(trainer.checkpoint_dir, ignore_errors=True)
        save_config(config, out / "train_config.yaml")
        record = {"objectives": config.objectives, "world_size": dist.get_world_size(), "parallel": vars(dims),
                  "losses": result.losses, "steps": result.final_step, "model_dir": str(model_dir)}
        write_json(out / "metrics.json", record)
    dist.barrier()
    dist.destroy_process_group()
    return record
