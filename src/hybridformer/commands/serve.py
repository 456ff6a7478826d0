"""``hybridformer serve``: an OpenAI-compatible HTTP server with dynamic batching, and a playground at /.

    hybridformer serve --model runs/sentiment/model --port 8000
    hybridformer serve --model tiny --model minilm=/path/to/minilm --api-key s3cret
    hybridformer serve --model runs/bbc/model --max-batch-size 1      # batching off
"""

from __future__ import annotations

import argparse
import dataclasses

from hybridformer.config_help import field_docs
from hybridformer.serve.config import ServeConfig


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", action="append", required=True, metavar="DIR|tiny|NAME=DIR",
        help="a model to serve (repeatable): a folder of `hybridformer finetune` (classify + embeddings), "
             "any text-model folder such as MiniLM (embeddings), or tiny (a RANDOM tiny causal LM for chat). "
             "The model's name is the folder's unless given as NAME=DIR",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML, TOML or JSON file of the settings below")
    docs = field_docs(ServeConfig)
    defaults = ServeConfig()
    for f in dataclasses.fields(ServeConfig):
        default = getattr(defaults, f.name)
        parser.add_argument(_flag(f.name), dest=f"cfg_{f.name}", metavar="VALUE",
                            help=f"{docs[f.name]} (default: {default})")


def run(args: argparse.Namespace) -> int:
    from hybridformer.config import load_config

    overrides: list[str] = []
    for f in dataclasses.fields(ServeConfig):
        value = getattr(args, f"cfg_{f.name}")
        if value is not None:
            overrides += [f"--{f.name}", value]
    if getattr(args, "overrides", None):
        overrides += list(args.overrides)
    config = load_config(ServeConfig, args.config, overrides)

    import torch

    from hybridformer.serve.models import load_served_model
    from hybridformer.serve.server import serve

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    models = [load_served_model(spec, config) for spec in args.model]
    names = ", ".join(f"{m.name} ({'/'.join(m.capabilities())})" for m in models)
    where = f"http://{config.host}:{config.port}"
    print(f"hybridformer serve: {names} on {where} (playground: {where}/, metrics: {where}/metrics)", flush=True)
    for m in models:
        if m.generator is not None:
            fmt = m.generator.prompt_format
            default = f"at temperature {fmt.temperature}, top_p {fmt.top_p}" if fmt.do_sample else "greedily"
            print(f"  {m.name}: chat prompts from {fmt.source}; a request without a temperature decodes {default}",
                  flush=True)
    serve(models, config)
    return 0
