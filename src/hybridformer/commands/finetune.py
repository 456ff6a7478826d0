"""``hybridformer finetune``: fine-tune a pretrained text encoder on a classification task, or the
multimodal model on ``--task vqa|caption|image-classification|video-classification`` (:mod:`.multimodal`;
the registry's family of ``--model`` decides, :mod:`._family`).

    hybridformer finetune --config configs/finetune_sentiment.yaml --out-dir runs/sentiment
    hybridformer finetune --data.task bbc --model.attention.kind hybrid --model.attention.window 64
    hybridformer finetune --data.format glue --data.path glue_data/RTE --out-dir runs/rte
"""

from __future__ import annotations

import argparse

from hybridformer.commands import multimodal
from hybridformer.commands._common import overrides_of
from hybridformer.commands._family import add_family_arguments, select_family
from hybridformer.config import load_config

OUT_DIR_FIELD = "train.out_dir"


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    add_family_arguments("finetune", parser, argv, OUT_DIR_FIELD)


def run(args: argparse.Namespace) -> int:
    if select_family("finetune", args) == "multimodal":  # the registry's answer for --model, --task, --objectives
        return multimodal.run_finetune(args)
    from hybridformer.recipes import FinetuneConfig, finetune
    from hybridformer.recipes.finetune import metric_line

    config = load_config(FinetuneConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = finetune(config)
    for split, metrics in result.unpruned_metrics.items():
        print(f"{split} accuracy before pruning: {metrics.accuracy:.4f}")
    if result.prune_report is not None:
        print(f"pruned {100 * result.prune_report.ffn_params_removed:.1f}% of the FFN parameters")
    for split, metrics in result.metrics.items():
        print(f"{split}: {metric_line(metrics)} ({metrics.n_examples} examples, {metrics.tokens_per_s:,.0f} tokens/s)")
    print(f"model saved to {result.model_dir} (with training_data.json: the data settings evaluate reuses)")
    print(f"metrics written to {result.metrics_path}")
    print(f"training logs in {config.out_dir} (log.jsonl{', tensorboard/' if config.train.tensorboard else ''})")
    return 0
