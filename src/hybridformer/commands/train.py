"""``hybridformer train``: parallel fine-tuning under torchrun (data, tensor and pipeline parallel).

    torchrun --nproc_per_node 4 -m hybridformer train --config configs/finetune_bbc.yaml \\
        --parallel.tp 2 --out-dir runs/bbc-tp2
    # two nodes: the same command on each, with --nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:PORT
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import add_config_arguments, overrides_of

OUT_DIR_FIELD = "train.out_dir"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybridformer.recipes.train_parallel import TrainParallelConfig

    add_config_arguments(parser, "configs/finetune_bbc.yaml", OUT_DIR_FIELD, TrainParallelConfig)


def run(args: argparse.Namespace) -> int:
    from hybridformer.config import load_config
    from hybridformer.recipes.train_parallel import TrainParallelConfig, train_parallel

    config = load_config(TrainParallelConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    record = train_parallel(config)
    if record is not None:
        for split in config.eval_splits:
            print(f"{split} accuracy: {record[split]['accuracy']:.4f}")
        print(f"model saved to {record['model_dir']}")
    return 0
