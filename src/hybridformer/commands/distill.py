"""``hybridformer distill``: train a student with half the teacher's layers on the teacher's predictions.

    hybridformer distill --teacher runs/sentiment/model --data.task sentiment --out-dir runs/student
    hybridformer distill --teacher runs/bbc/model --data.task bbc --student.attention.kind hybrid \\
        --temperature 2 --label_weight 0.5 --hidden_weight 1 --attention_weight 0.5
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import add_config_arguments, overrides_of
from hybridformer.config import load_config

OUT_DIR_FIELD = "train.out_dir"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybridformer.deploy.distill import DistillConfig

    # --teacher DIR is the config field `teacher` (listed in the help), so it needs no flag of its own.
    add_config_arguments(parser, "a distill.yaml with teacher, student, data, train", OUT_DIR_FIELD, DistillConfig)


def run(args: argparse.Namespace) -> int:
    from hybridformer.deploy.distill import DistillConfig, distill

    config = load_config(DistillConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = distill(config)
    for split, metrics in result.metrics.items():
        line = f"student {split} accuracy: {metrics.accuracy:.4f} ({metrics.n_examples} examples)"
        teacher = result.teacher_metrics.get(split)
        if teacher is not None and teacher.accuracy > 0:
            line += f"; teacher {teacher.accuracy:.4f} ({100 * metrics.accuracy / teacher.accuracy:.1f}% kept)"
        print(line)
    print(f"student saved to {result.model_dir}")
    print(f"metrics written to {result.metrics_path}")
    return 0
