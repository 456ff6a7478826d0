"""The multimodal side of ``pretrain``, ``finetune`` and ``evaluate`` (chosen by :func:`is_multimodal`).

    hybridformer pretrain --objectives mlm,itc,itm,caption --model tiny --data.task mnist5k --out-dir runs/mm
    hybridformer finetune --task vqa --model runs/mm/model --data.train_fraction 0.1 --out-dir runs/vqa
    hybridformer finetune --task image-classification|caption|video-classification --model runs/mm/model
    hybridformer evaluate --task vqa|vqa-zeroshot|retrieval|zeroshot-classification|caption|... --model DIR
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import overrides_of
from hybridformer.config import load_config

__all__ = ["is_multimodal", "run_pretrain", "run_finetune", "run_evaluate"]

OUT_DIR_FIELD = "train.out_dir"
_MM_OBJECTIVES = {"itc", "itm", "caption"}


def _value(overrides: list[str], flag: str) -> str | None:
    return overrides[overrides.index(flag) + 1] if flag in overrides[:-1] else None


def is_multimodal(args: argparse.Namespace) -> bool:
    """True when the command line names a multimodal model (``--model``), a multimodal task
    (``--task``) or a multimodal objective (``--objectives itc,...``)."""
    extra = list(getattr(args, "overrides", []) or [])
    objectives = set((_value(extra, "--objectives") or "").split(","))
    return "--model" in extra or "--task" in extra or bool(objectives & _MM_OBJECTIVES)


def run_pretrain(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_pretrain import MMPretrainConfig, mm_pretrain

    config = load_config(MMPretrainConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = mm_pretrain(config)
    losses = result.train.losses
    print(f"{'+'.join(config.objectives)}: {result.train.final_step} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
          f"{result.examples_per_s:.2f} examples/s")
    print(f"model saved to {result.model_dir}")
    print(f"metrics written to {result.metrics_path}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_tasks import MMFinetuneConfig, mm_finetune

    config = load_config(MMFinetuneConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = mm_finetune(config)
    for name, value in result.metrics.items():
        print(f"{config.task} test {name}: {value:.4f}")
    print(f"model saved to {result.model_dir}")
    print(f"metrics written to {result.metrics_path}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_tasks import MMEvaluateConfig, mm_evaluate

    config = load_config(MMEvaluateConfig, args.config, overrides_of(args, None))
    for name, value in mm_evaluate(config).items():
        print(f"{config.task} test {name}: {value:.4f}")
    return 0
