"""``hybridformer evaluate``: accuracy, macro-F1, per-class scores, confusion matrix and predictions of a saved
classifier; a multimodal model (``--task ... --model DIR``) is evaluated by :mod:`.multimodal`.

    hybridformer evaluate --model-dir runs/sentiment/model                  # on the data it was trained with
    hybridformer evaluate --model-dir runs/bbc/model --max_positions 2048 --data.max_length 2048
    hybridformer evaluate --model-dir runs/mine/model --data.test_file other.csv --out-dir runs/mine/eval_other
    hybridformer evaluate --model-dir runs/rte/model     # GLUE: dev scores (scores.md) and the submission TSV
"""

from __future__ import annotations

import argparse

from hybridformer.commands import multimodal
from hybridformer.commands._common import overrides_of
from hybridformer.commands._family import add_family_arguments, select_family
from hybridformer.config import load_config

OUT_DIR_FIELD = "out_dir"


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    add_family_arguments("evaluate", parser, argv, OUT_DIR_FIELD,
                         flags={"model-dir": ("model_dir", "the saved classifier's folder (a finetune run's model/); required")})


def run(args: argparse.Namespace) -> int:
    if select_family("evaluate", args) == "multimodal":  # the registry's answer for --model, --task, --objectives
        return multimodal.run_evaluate(args)
    from hybridformer.recipes import EvaluateConfig, evaluate
    from hybridformer.recipes.finetune import metric_line

    config = load_config(EvaluateConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = evaluate(config)
    m = result.metrics
    split = "dev" if result.data.task == "glue" else config.split
    print(f"{result.data.task} {split}: {metric_line(m)} ({m.n_examples} examples, max_length {m.max_length})")
    if m.per_class:
        width = max(len(name) for name in m.per_class)
        print(f"  {'class':<{width}}  precision  recall     f1  support")
        for name, s in m.per_class.items():
            print(f"  {name:<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:5.3f}  {s['support']:7d}")
    print(f"inference: {m.tokens_per_s:,.0f} tokens/s at batch size {m.batch_size}, "
          f"peak memory {m.peak_memory_mb:,.0f} MB")
    print(f"metrics (confusion matrix included) written to {result.metrics_path}")
    print(f"predictions written to {result.predictions_path}")
    if result.confusion_path is not None:
        print(f"confusion matrix drawn in {result.confusion_path}")
    for path in result.submissions:
        print(f"GLUE submission file written: {path}")
    return 0
