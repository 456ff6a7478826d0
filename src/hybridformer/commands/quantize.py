"""``hybridformer quantize``: int8 copy of a saved classifier or multimodal model (weights, word embeddings,
dynamic activations); the folder's architecture (:mod:`hybridformer.registry`) picks the transform.

    hybridformer quantize --model runs/sentiment/model --out runs/sentiment/int8
    hybridformer quantize --model runs/sentiment/model --mode weight --out runs/sentiment/int8-weight
    hybridformer quantize --model runs/sentiment/model --smooth 0.8 --data.task sentiment --out runs/sentiment/int8
    hybridformer evaluate --model-dir runs/sentiment/int8 --data.task sentiment

Dynamic int8 first smooths activation outliers into the weights (SmoothQuant, alpha 0.8 by default),
calibrated on a few training batches of the task given by ``--data.*`` (the same options as
``finetune``'s data) or, without them, of the task recorded in the model folder (``training_data.json``);
with neither it quantizes unsmoothed and says so. ``--smooth none`` turns smoothing off.

The output folder loads with ``hybridformer.registry.load_model`` (so ``evaluate``, ``generate`` and
``serve`` read it unchanged) and carries the float folder's other files (tokenizer, generation config).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hybridformer.config import ConfigError

DEFAULT_ALPHA = 0.8
"""SmoothQuant alpha of ``--smooth auto``: on our fine-tuned MiniLMs it halved the logit error of
torch.ao's per-tensor int8 vs fp32 (0.5 made it worse; docs/compression.md)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="folder of a saved float model: a text classifier or a multimodal model (required)")
    parser.add_argument("--out", metavar="DIR", help="folder for the int8 classifier (required)")
    parser.add_argument("--mode", default="dynamic",
                        help="dynamic: int8 weights and activations (fast); weight: int8 weights, float compute")
    parser.add_argument("--backend", default=None,
                        help="ao (torch.ao, default for dynamic) or torchao (default for weight); see docs/compression.md")
    parser.add_argument("--smooth", default="auto", metavar="ALPHA",
                        help="SmoothQuant alpha in [0, 1], 'none', or 'auto' (default: 0.8 for --mode dynamic when "
                             "calibration data is known): per-channel smoothing before int8, calibrated on training "
                             "batches of --data.* or the model's recorded task")
    parser.add_argument("--calibration-batches", type=int, default=8, metavar="N",
                        help="batches of 16 training examples the smoothing is calibrated on (default 8)")
    parser.add_argument("--float-embeddings", action="store_true",
                        help="keep the word-embedding table in float (by default it is stored as uint8 rows)")
    parser.add_argument("--separate-qkv", action="store_true",
                        help="keep q/k/v as three int8 layers (by default they are fused into one: one activation "
                             "quantization and one wider GEMM instead of three)")


def _calibration_data(args: argparse.Namespace):
    """The ``--data.*`` options as a TaskDataConfig (None when none are given)."""
    from hybridformer.config import apply_overrides, parse_overrides
    from hybridformer.recipes.task_data import TaskDataConfig

    overrides = parse_overrides(args.overrides)
    unknown = [k for k in overrides if not k.startswith("data.")]
    if unknown:
        raise ConfigError(f"--{unknown[0]}: unknown option of quantize (only --data.* calibration options)")
    if not overrides:
        return None
    return apply_overrides(TaskDataConfig(), {k[len("data."):]: v for k, v in overrides.items()})


def _smoothing(args: argparse.Namespace) -> tuple[float | None, object, str]:
    """(alpha or None, calibration TaskDataConfig or None, a note for the user) from the flags."""
    from hybridformer.recipes.task_data import read_data_record

    calibration = _calibration_data(args)
    if args.smooth == "none":
        return None, None, ""
    if args.smooth != "auto":
        try:
            alpha = float(args.smooth)
        except ValueError:
            raise ConfigError(f"--smooth: must be a number in [0, 1], 'auto' or 'none', got {args.smooth!r}") from None
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"--smooth: alpha must be in [0, 1], got {alpha}")
        if calibration is None and args.model is not None and Path(args.model).is_dir():
            calibration = read_data_record(args.model)
        if calibration is None:
            raise ConfigError("--smooth: needs calibration data, e.g. --data.task sentiment")
        return alpha, calibration, ""
    if args.mode != "dynamic":
        return None, None, ""
    if calibration is None and args.model is not None and Path(args.model).is_dir():
        calibration = read_data_record(args.model)
    if calibration is None:
        return None, None, "no calibration data (--data.task TASK, or a training_data.json record): not smoothed"
    return DEFAULT_ALPHA, calibration, ""


def run(args: argparse.Namespace) -> int:
    from hybridformer.registry import family_of

    if args.model is not None and Path(args.model).is_dir() and family_of(args.model).name == "multimodal":
        return _run_multimodal(args)
    alpha, calibration, note = _smoothing(args)
    if args.calibration_batches < 1:
        raise ConfigError(f"--calibration-batches: must be >= 1, got {args.calibration_batches}")
    _check_flags(args)
    from hybridformer.recipes.quantize import quantize_folder

    if note:
        print(note)
    report = quantize_folder(args.model, args.out, args.mode, args.backend, embeddings=not args.float_embeddings,
                             smooth=alpha, calibration=calibration, calibration_batches=args.calibration_batches,
                             fuse_qkv=not args.separate_qkv)
    _print_report(report)
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    for flag in ("model", "out"):
        if getattr(args, flag) is None:
            raise ConfigError(f"--{flag}: is required")
    if args.mode not in ("weight", "dynamic"):
        raise ConfigError(f"--mode: must be 'weight' or 'dynamic', got {args.mode!r}")
    if args.backend not in (None, "ao", "torchao"):
        raise ConfigError(f"--backend: must be 'ao' or 'torchao', got {args.backend!r}")


def _run_multimodal(args: argparse.Namespace) -> int:
    """A multimodal model: int8 Linears and word table, int8-stored convolutions and token table."""
    from hybridformer.recipes.quantize import quantize_folder

    _check_flags(args)
    if args.smooth not in ("auto", "none") or args.overrides:
        raise ConfigError("--smooth/--data.*: smoothing is calibrated on text-classification batches and covers "
                          "classifiers; a multimodal model is quantized without it (leave --smooth at auto or none)")
    report = quantize_folder(args.model, args.out, args.mode, args.backend, embeddings=not args.float_embeddings)
    print("multimodal model: convolution kernels and the decoder's token table are stored int8, computed in float")
    _print_report(report)
    return 0


def _print_report(report) -> None:
    smoothed = "" if report.spec.smooth is None else f", smoothed (alpha {report.spec.smooth})"
    smoothed += ", q/k/v fused" if report.spec.fused_qkv else ""
    print(f"int8 ({report.spec.mode}, backend {report.spec.backend}{smoothed}): {len(report.spec.linears)} Linear layers"
          f"{' and the word embeddings' if report.spec.embeddings else ''}")
    print(f"size {report.float_bytes:,} -> {report.int8_bytes:,} bytes ({100 * report.ratio:.1f}%)")
    print(f"saved to {report.out_dir}")
