"""``hybridformer distill``: train a student with half the teacher's layers on the teacher's predictions.

    hybridformer distill --teacher runs/sentiment/model --data.task sentiment --out-dir runs/student
    hybridformer distill --teacher runs/bbc/model --data.task bbc --student.attention.kind hybrid \\
        --temperature 2 --label_weight 0.5 --hidden_weight 1 --attention_weight 0.5
    hybridformer distill --teacher runs/mm/model --data.task mnist5k --out-dir runs/mm-student

A multimodal teacher (a ``MultimodalModel`` folder) takes the multimodal recipe's fields instead
(``recipes/distill_multimodal.py``: ``student.text_encoder_layers``, ``student.decoder_layers``,
``data.*`` of the image-text sets, ``temperature``, ``label_weight``, ``eval_examples``, ``train.*``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hybridformer.commands._common import add_config_arguments, overrides_of
from hybridformer.config import load_config

OUT_DIR_FIELD = "train.out_dir"


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    # --teacher DIR is the config field `teacher` (listed in the help), so it needs no flag of its own.
    # The help lists the fields of the recipe the teacher's family runs (the registry's answer).
    if _help_family(argv) == "multimodal":
        from hybridformer.recipes.distill_multimodal import MMDistillConfig as config_class
    else:
        from hybridformer.recipes.distill import DistillConfig as config_class
    add_config_arguments(parser, "a distill.yaml with teacher, student, data, train", OUT_DIR_FIELD, config_class)


def _help_family(argv: list[str] | None) -> str:
    """The registry family of ``--teacher DIR`` on the command line being built; text when unsure."""
    from hybridformer.registry import family_of

    args = list(argv or [])
    if "--teacher" not in args[:-1]:
        return "text"
    teacher = args[args.index("--teacher") + 1]
    try:
        return family_of(teacher).name if Path(teacher).is_dir() else "text"
    except (FileNotFoundError, ValueError):
        return "text"


def _teacher(args: argparse.Namespace, overrides: list[str]) -> str | None:
    """The ``teacher`` field from the command line (the last wins), else from the --config file."""
    from hybridformer.config import parse_overrides, read_config_file

    teacher = parse_overrides(overrides).get("teacher")
    if teacher is None and args.config is not None:
        teacher = read_config_file(args.config).get("teacher")
    return None if teacher is None else str(teacher)


def run(args: argparse.Namespace) -> int:
    from hybridformer.recipes.distill import DistillConfig, distill
    from hybridformer.registry import family_of

    overrides = overrides_of(args, OUT_DIR_FIELD)
    teacher = _teacher(args, overrides)
    if teacher is not None and Path(teacher).is_dir() and family_of(teacher).name == "multimodal":
        return _run_multimodal(args, overrides)
    config = load_config(DistillConfig, args.config, overrides)
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


def _run_multimodal(args: argparse.Namespace, overrides: list[str]) -> int:
    from hybridformer.recipes.distill_multimodal import MMDistillConfig, mm_distill

    result = mm_distill(load_config(MMDistillConfig, args.config, overrides))
    s, t = result.metrics, result.teacher_metrics
    print(f"student held-out caption loss {s['caption_loss']:.4f}, next-token accuracy {s['caption_accuracy']:.4f} "
          f"({s['examples']} pairs); teacher {t['caption_loss']:.4f}, {t['caption_accuracy']:.4f}")
    print(f"student saved to {result.model_dir}")
    print(f"metrics written to {result.metrics_path}")
    return 0
