"""``hybridformer evaluate``: accuracy, tokens/s and peak memory of a saved classifier.

    hybridformer evaluate --model-dir runs/sentiment/model --data.task sentiment
    hybridformer evaluate --model-dir runs/bbc/model --data.task bbc --max-positions 2048 --data.max_length 2048
    hybridformer evaluate --model-dir runs/mine/model --data.task file --data.test_file test.csv
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import add_config_arguments, overrides_of
from hybridformer.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "an evaluate.yaml with model_dir, data, split", None)


def run(args: argparse.Namespace) -> int:
    from hybridformer.commands import multimodal

    if multimodal.is_multimodal(args):  # --model tiny|DIR, --task, --objectives itc,...
        return multimodal.run_evaluate(args)
    from hybridformer.recipes import EvaluateConfig, evaluate

    config = load_config(EvaluateConfig, args.config, overrides_of(args, None))
    result = evaluate(config)
    m = result.metrics
    print(f"{config.data.task} {config.split} accuracy: {m.accuracy:.4f} ({m.n_examples} examples, "
          f"max_length {m.max_length})")
    print(f"inference: {m.tokens_per_s:,.0f} tokens/s at batch size {m.batch_size}, "
          f"peak memory {m.peak_memory_mb:,.0f} MB")
    print(f"report written to {result.report_path}")
    return 0
