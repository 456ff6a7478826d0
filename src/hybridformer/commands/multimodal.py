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


def _print_bad_files(summary: dict | None) -> None:
    """The run's skipped files (``--data.on_bad_file skip``), first ten named."""
    if not summary or not summary["count"]:
        return
    print(f"skipped {summary['count']} bad file(s) (data.on_bad_file=skip):")
    for item in summary["files"][:10]:
        print(f"  {item['path']}: {item['reason']}")
    if summary["count"] > 10:
        print(f"  ... and {summary['count'] - 10} more (all listed in metrics.json)")


def run_pretrain(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_pretrain import MMPretrainConfig, mm_pretrain

    config = load_config(MMPretrainConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = mm_pretrain(config)
    print_pretraining(config.objectives, result.train, rate=f", {result.examples_per_s:.2f} examples/s")
    _print_bad_files(result.bad_files)
    print_outputs(result)
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_tasks import MMFinetuneConfig, mm_finetune

    config = load_config(MMFinetuneConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = mm_finetune(config)
    for name, value in result.metrics.items():
        print(f"{config.task} test {name}: {value:.4f}")
    _print_bad_files(result.bad_files)
    print_outputs(result)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from hybridformer.recipes.multimodal_tasks import MMEvaluateConfig, mm_evaluate_scored

    config = load_config(MMEvaluateConfig, args.config, overrides_of(args, None))
    result = mm_evaluate_scored(config)
    for name, value in result.metrics.items():
        print(f"{config.task} test {name}: {value:.4f}")
    if result.report is not None:
        width = max(len(n) for n in result.report.per_class)
        for name, s in result.report.per_class.items():
            print(f"  {name:<{width}}  precision {s.precision:.3f}  recall {s.recall:.3f}  f1 {s.f1:.3f}  support {s.support}")
    _print_bad_files(result.bad_files)
    return 0
