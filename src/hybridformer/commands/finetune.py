"""``hybridformer finetune``: fine-tune a pretrained text encoder on a classification task.

    hybridformer finetune --config configs/finetune_sentiment.yaml --out-dir runs/sentiment
    hybridformer finetune --data.task bbc --model.attention.kind hybrid --model.attention.window 64
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import add_config_arguments, overrides_of
from hybridformer.config import load_config

OUT_DIR_FIELD = "train.out_dir"


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    from hybridformer.commands._family import RECIPES, help_family

    recipe = RECIPES[("finetune", help_family(argv, "finetune"))]
    add_config_arguments(parser, recipe.example, OUT_DIR_FIELD, recipe.config_class())


def run(args: argparse.Namespace) -> int:
    from hybridformer.commands import multimodal
    from hybridformer.commands._family import recipe_for

    family, recipe, extra = recipe_for("finetune", args)
    if family == "multimodal":  # the registry's answer for --model tiny|DIR, --task, --objectives itc,...
        return multimodal.run_finetune(args, extra)
    args.overrides = extra
    from hybridformer.recipes import FinetuneConfig, finetune

    config = load_config(FinetuneConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = finetune(config)
    for split, metrics in result.unpruned_metrics.items():
        print(f"{split} accuracy before pruning: {metrics.accuracy:.4f}")
    if result.prune_report is not None:
        print(f"pruned {100 * result.prune_report.ffn_params_removed:.1f}% of the FFN parameters")
    for split, metrics in result.metrics.items():
        print(f"{split} accuracy: {metrics.accuracy:.4f}, macro-F1 {metrics.macro_f1:.4f} "
              f"({metrics.n_examples} examples, {metrics.tokens_per_s:,.0f} tokens/s)")
    print(f"model saved to {result.model_dir} (with training_data.json: the data settings evaluate reuses)")
    print(f"metrics written to {result.metrics_path}")
    print(f"training logs in {config.out_dir} (log.jsonl{', tensorboard/' if config.train.tensorboard else ''})")
    return 0
