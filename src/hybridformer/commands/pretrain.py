"""``hybridformer pretrain``: self-supervised pretraining of a text encoder (``--objectives mlm``).

    hybridformer pretrain --objectives mlm --corpus.source bbc --out-dir runs/mlm
    hybridformer pretrain --objectives mlm --model.init_from path/to/bert --corpus.source file --corpus.file texts.txt
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import add_config_arguments, overrides_of
from hybridformer.config import load_config

OUT_DIR_FIELD = "train.out_dir"


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    from hybridformer.commands._family import RECIPES, help_family

    recipe = RECIPES[("pretrain", help_family(argv, "pretrain"))]
    add_config_arguments(parser, recipe.example, OUT_DIR_FIELD, recipe.config_class())


def run(args: argparse.Namespace) -> int:
    from hybridformer.commands import multimodal
    from hybridformer.commands._family import recipe_for

    family, recipe, extra = recipe_for("pretrain", args)
    if family == "multimodal":  # the registry's answer for --model tiny|DIR, --task, --objectives itc,...
        return multimodal.run_pretrain(args, extra)
    args.overrides = extra
    from hybridformer.recipes import PretrainConfig, pretrain

    config = load_config(PretrainConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = pretrain(config)
    losses = result.train.losses
    print(f"{'+'.join(config.objectives)}: {result.train.final_step} steps on {result.n_documents} documents, "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"model saved to {result.model_dir}")
    print(f"metrics written to {result.metrics_path}")
    print(f"training logs in {config.out_dir}")
    return 0
