"""``hybridformer plan``: memory per rank, communication and step time of a parallel layout.

    hybridformer plan --model 70b --parallel.tp 8 --parallel.pp 4 --parallel.dp_shard 2 \\
        --seq_len 4096 --global_batch 512 --microbatches 64 --activation_checkpointing true
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import add_config_arguments, overrides_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybridformer.distributed.plan import PlanConfig

    add_config_arguments(parser, "configs/plan_70b.yaml", None, PlanConfig)


def run(args: argparse.Namespace) -> int:
    from hybridformer.config import load_config
    from hybridformer.distributed.plan import PlanConfig
    from hybridformer.distributed.plan_report import format_plan

    print(format_plan(load_config(PlanConfig, args.config, overrides_of(args, None))))
    return 0
