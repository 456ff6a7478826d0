"""``hybridformer quantize``: int8 copy of a saved classifier (weights, word embeddings, dynamic activations).

    hybridformer quantize --model runs/sentiment/model --out runs/sentiment/int8
    hybridformer quantize --model runs/sentiment/model --mode weight --out runs/sentiment/int8-weight
    hybridformer evaluate --model-dir runs/sentiment/int8 --data.task sentiment

The output folder loads with ``TextClassifier.from_pretrained`` (so ``evaluate`` reads it unchanged)
and carries the model's tokenizer.
"""

from __future__ import annotations

import argparse

from hybridformer.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="folder of a saved float classifier (required)")
    parser.add_argument("--out", metavar="DIR", help="folder for the int8 classifier (required)")
    parser.add_argument("--mode", default="dynamic",
                        help="dynamic: int8 weights and activations (fast); weight: int8 weights, float compute")
    parser.add_argument("--backend", default=None,
                        help="ao (torch.ao, default for dynamic) or torchao (default for weight); see docs/compression.md")
    parser.add_argument("--float-embeddings", action="store_true",
                        help="keep the word-embedding table in float (by default it is stored as uint8 rows)")


def run(args: argparse.Namespace) -> int:
    if args.overrides:
        raise ConfigError(f"{args.overrides[0]}: unknown option of quantize")
    for flag in ("model", "out"):
        if getattr(args, flag) is None:
            raise ConfigError(f"--{flag}: is required")
    if args.mode not in ("weight", "dynamic"):
        raise ConfigError(f"--mode: must be 'weight' or 'dynamic', got {args.mode!r}")
    if args.backend not in (None, "ao", "torchao"):
        raise ConfigError(f"--backend: must be 'ao' or 'torchao', got {args.backend!r}")
    from hybridformer.deploy import quantize_folder

    report = quantize_folder(args.model, args.out, args.mode, args.backend, embeddings=not args.float_embeddings)
    print(f"int8 ({report.spec.mode}, backend {report.spec.backend}): {len(report.spec.linears)} Linear layers"
          f"{' and the word embeddings' if report.spec.embeddings else ''}")
    print(f"size {report.float_bytes:,} -> {report.int8_bytes:,} bytes ({100 * report.ratio:.1f}%)")
    print(f"saved to {report.out_dir}")
    return 0
