"""``hybridformer pretrain``: self-supervised pretraining of a text encoder (``--objectives mlm``), or of the
multimodal model (``--model tiny|DIR --objectives mlm,itc,itm,caption``, :mod:`.multimodal`): the registry's
family of ``--model`` decides (:mod:`._family`).

    hybridformer pretrain --objectives mlm --corpus.source bbc --out-dir runs/mlm
    hybridformer pretrain --objectives mlm --model.init_from path/to/bert --corpus.source file --corpus.file texts.txt
"""

from __future__ import annotations

import argparse

from hybridformer.commands import multimodal
from hybridformer.commands._common import overrides_of, print_outputs, print_pretraining
from hybridformer.commands._family import add_family_arguments, select_family
from hybridformer.config import load_config

OUT_DIR_FIELD = "train.out_dir"


def add_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    add_family_arguments("pretrain", parser, argv, OUT_DIR_FIELD)


def run(args: argparse.Namespace) -> int:
    if select_family("pretrain", args) == "multimodal":  # the registry's answer for --model, --task, --objectives
        return multimodal.run_pretrain(args)
    from hybridformer.recipes import PretrainConfig, pretrain

    config = load_config(PretrainConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = pretrain(config)
    print_pretraining(config.objectives, result.train, where=f" on {result.n_documents} documents")
    print_outputs(result)
    print(f"training logs in {config.out_dir}")
    return 0
