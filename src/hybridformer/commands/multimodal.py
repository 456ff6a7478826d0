"""The multimodal side of ``pretrain``, ``finetune`` and ``evaluate`` (the registry's ``multimodal`` family,
chosen by :mod:`hybridformer.commands._family`).

    hybridformer pretrain --objectives mlm,itc,itm,caption --model tiny --data.task mnist5k --out-dir runs/mm
    hybridformer finetune --task vqa --model runs/mm/model --data.train_fraction 0.1 --out-dir runs/vqa
    hybridformer finetune --task image-classification|caption|video-classification --model runs/mm/model
    hybridformer evaluate --task vqa|vqa-zeroshot|retrieval|zeroshot-classification|caption|... --model DIR
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import overrides_of, print_outputs, print_pretraining
from hybridformer.config import load_config

__all__ = ["run_pretrain", "run_finetune", "run_evaluate"]

OUT_DIR_FIELD = "train.out_dir"


def run_pretrain(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_pretrain import MMPretrainConfig, mm_pretrain

    config = load_config(MMPretrainConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = mm_pretrain(config)
    print_pretraining(config.objectives, result.train, rate=f", {result.examples_per_s:.2f} examples/s")
    print_outputs(result)
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_tasks import MMFinetuneConfig, mm_finetune

    config = load_config(MMFinetuneConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = mm_finetune(config)
    for name, value in result.metrics.items():
        print(f"{config.task} test {name}: {value:.4f}")
    print_outputs(result)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_tasks import MMEvaluateConfig, mm_evaluate

    config = load_config(MMEvaluateConfig, args.config, overrides_of(args, None))
    for name, value in mm_evaluate(config).items():
        print(f"{config.task} test {name}: {value:.4f}")
    return 0
