"""The ``hybridformer`` command line.

Each subcommand lives in ``hybridformer/commands/<name>.py`` and exposes ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported lazily so ``hybridformer --help`` stays fast and a
missing optional dependency only affects the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys

from hybridformer.config import ConfigError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "finetune": ("hybridformer.commands.finetune", "fine-tune a text classifier (--data.task), or the multimodal "
                 "model (--model tiny|DIR) on --task vqa|caption|image-classification|video-classification"),
    "evaluate": ("hybridformer.commands.evaluate", "evaluate a classifier (--model-dir), or the multimodal model on "
                 "--task vqa|vqa-zeroshot|retrieval|zeroshot-classification|caption|image-classification|..."),
    "pretrain": ("hybridformer.commands.pretrain", "pretrain a text encoder (--objectives mlm) or the multimodal "
                 "model (--model tiny|DIR --objectives mlm,itc,itm,caption)"),
    "train-tokenizer": ("hybridformer.commands.train_tokenizer", "train a byte-level BPE tokenizer"),
    "distill": ("hybridformer.commands.distill", "distill a classifier or a multimodal model into a student with half "
                "its layers"),
    "quantize": ("hybridformer.commands.quantize", "int8-quantize a saved classifier or multimodal model (weight-only "
                 "or dynamic)"),
    "train": ("hybridformer.commands.train", "train in parallel under torchrun: a text classifier, or the multimodal "
              "model (--model tiny|DIR --objectives itc,itm,caption) (--parallel.tp/pp/dp_shard)"),
    "plan": ("hybridformer.commands.plan", "memory, communication and step time of a parallel layout (on paper)"),
    "serve": ("hybridformer.commands.serve", "serve models over HTTP (OpenAI-compatible, dynamic batching)"),
    "generate": ("hybridformer.commands.generate", "generate text from an image (and clip) and a prompt"),
    "report": ("hybridformer.commands.report", "re-render a run folder's report.md and plots from its results.json"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridformer",
        description="Efficient multimodal transformer: hybrid attention, dynamic sparse activation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        # No prefix matching: `--model tiny` must stay a config override, not become `--model-dir`.
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if name == wanted:
            add_arguments = importlib.import_module(module).add_arguments
            # the family commands pick the config fields --help lists from the registry's family
            if "argv" in inspect.signature(add_arguments).parameters:
                add_arguments(p, argv=argv)
            else:
                add_arguments(p)
    return parser


def _flagged(args: argparse.Namespace, err: Exception) -> str:
    """The error message naming the flag a user typed (``--data.train_file: ...``) when it names a field."""
    cls = getattr(args, "config_class", None)
    if cls is None:
        return str(err)
    from hybridformer.commands._common import flag_aliases
    from hybridformer.config_help import name_flag

    return name_flag(str(err), cls, flag_aliases(args))


class _StderrHandler(logging.Handler):
    """Prints each record to the current ``sys.stderr`` (looked up per record: tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def _configure_logging() -> None:
    """Progress lines and run summaries (``hybridformer.training`` / ``.recipes``) go to stderr as plain lines."""
    for name in ("hybridformer.training", "hybridformer.recipes"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            logger.addHandler(_StderrHandler())
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    # Unknown `--section.field value` pairs are config overrides, parsed by the subcommand.
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.overrides = extra
    module = importlib.import_module(COMMANDS[args.command][0])
    _configure_logging()
    try:
        return int(module.run(args) or 0)
    except ConfigError as err:
        print(f"hybridformer {args.command}: config error: {_flagged(args, err)}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"hybridformer {args.command}: error: {_flagged(args, err)}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        from hybridformer.training import TrainingDivergedError

        # A NaN/inf loss stops training with a message naming the step: print it, no stack trace.
        if not isinstance(err, TrainingDivergedError):
            raise
        print(f"hybridformer {args.command}: training stopped: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
