"""``hybridformer train``: parallel training under torchrun (data, tensor and pipeline parallel).

    torchrun --nproc_per_node 4 -m hybridformer train --config configs/finetune_bbc.yaml \\
        --parallel.tp 2 --out-dir runs/bbc-tp2
    torchrun --nproc_per_node 4 -m hybridformer train --model tiny --objectives itc,itm,caption \\
        --parallel.tp 2 --out-dir runs/mm-tp2
    # two nodes: the same command on each, with --nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:PORT

The text classifier (``--model.*`` fields, the finetune recipe) or the multimodal model (``--model
tiny|DIR``, the multimodal pretraining recipe; dp and tp, no pp): :func:`model_family` decides.
"""

from __future__ import annotations

import argparse
import sys
from typing import Literal

from hybridformer.commands._common import add_config_arguments, overrides_of

OUT_DIR_FIELD = "train.out_dir"


def model_family(model: str | None) -> Literal["text", "multimodal"]:
    """The family a ``--model`` value names, from the registry (``tiny`` or a multimodal folder);
    no ``--model`` (the text recipe's ``--model.*`` fields) is the text classifier.

    Raises:
        FileNotFoundError: neither a flavor nor a model folder; ValueError: a text model's folder.
    """
    if model is None:
        return "text"
    from hybridformer.registry import family_of

    family = family_of(model).name
    if family != "multimodal":
        raise ValueError(f"--model: {model!r} holds a {family} model; a text classifier starts from --model.init_from")
    return "multimodal"


def _model_value(argv: list[str]) -> str | None:
    return argv[argv.index("--model") + 1] if "--model" in argv[:-1] else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybridformer.recipes.train_parallel import TrainParallelConfig
    from hybridformer.recipes.train_parallel_multimodal import MMTrainParallelConfig

    try:
        family = model_family(_model_value(sys.argv))
    except (FileNotFoundError, ValueError):
        family = "multimodal"  # run() names the problem
    config_class = MMTrainParallelConfig if family == "multimodal" else TrainParallelConfig
    add_config_arguments(parser, "configs/finetune_bbc.yaml", OUT_DIR_FIELD, config_class)


def run(args: argparse.Namespace) -> int:
    from hybridformer.config import load_config

    if model_family(_model_value(list(getattr(args, "overrides", []) or []))) == "multimodal":
        from hybridformer.recipes.train_parallel_multimodal import MMTrainParallelConfig, train_parallel_multimodal

        config = load_config(MMTrainParallelConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
        record = train_parallel_multimodal(config)
        if record is not None:
            print(f"{'+'.join(config.objectives)}: {record['steps']} steps, loss {record['losses'][0]:.3f} -> "
                  f"{record['losses'][-1]:.3f}")
            print(f"model saved to {record['model_dir']}")
        return 0
    from hybridformer.recipes.train_parallel import TrainParallelConfig, train_parallel

    config = load_config(TrainParallelConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    record = train_parallel(config)
    if record is not None:
        for split in config.eval_splits:
            print(f"{split} accuracy: {record[split]['accuracy']:.4f}")
        print(f"model saved to {record['model_dir']}")
    return 0
