"""What the config-driven commands share: ``--config``, flags of their own, and help built from the config.

A command passes its config dataclass to :func:`add_config_arguments`; its ``--help`` then lists every
field (``--section.field TYPE (default X): doc``, from the dataclasses' attribute docstrings) and the
CLI's error messages name the flag a user typed (``--data.train_file: ...``).
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

__all__ = ["add_config_arguments", "overrides_of", "flag_aliases", "print_outputs", "print_pretraining"]

_EPILOG = (
    "Every config field{below} can be set on the command line as --section.field VALUE (after the\n"
    "defaults and the --config file), e.g. --data.task bbc --train.lr 1e-4; lists take commas.\n"
    "An unknown field or a bad value stops with exit code 2 and names the flag."
)


def add_config_arguments(
    parser: argparse.ArgumentParser,
    example: str,
    out_dir_field: str | None,
    config_class: type | None = None,
    flags: Mapping[str, tuple[str, str]] | None = None,
) -> None:
    """Add ``--config``, ``--out-dir`` (when the command has a run folder) and flags of the command's own.

    Args:
        parser: the subcommand's parser.
        example: an example config file shown in the help.
        out_dir_field: the dotted config field ``--out-dir`` sets, or None for no ``--out-dir``.
        config_class: the command's config dataclass: its fields are listed in ``--help`` and errors
            about them name the flag.
        flags: ``{"model-dir": ("model_dir", "help")}``: more flags that set a config field.
    """
    parser.add_argument("--config", metavar="FILE", help=f"YAML, TOML or JSON config (e.g. {example})")
    own = dict(flags or {})
    if out_dir_field is not None:
        own = {"out-dir": (out_dir_field, f"where outputs go (the same as --{out_dir_field})"), **own}
    for flag, (field, help_text) in own.items():
        parser.add_argument(f"--{flag}", metavar=flag.split("-")[-1].upper(), dest=flag.replace("-", "_"),
                            help=help_text)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(config_class=config_class, config_flags={f: field for f, (field, _) in own.items()})
    lines = [_EPILOG.format(below=" below" if config_class is not None else "")]
    if config_class is not None:
        from hybridformer.config_help import describe_fields

        lines += ["", "config fields:", *describe_fields(config_class(), aliases=flag_aliases(parser))]
    parser.epilog = "\n".join(lines)


def flag_aliases(source: argparse.ArgumentParser | argparse.Namespace) -> dict[str, str]:
    """``{dotted field: "--flag"}`` for the fields a command sets through flags of its own."""
    flags: dict[str, str] = (
        source.get_default("config_flags") if isinstance(source, argparse.ArgumentParser)
        else getattr(source, "config_flags", None)
    ) or {}
    return {field: f"--{flag}" for flag, field in flags.items()}


def overrides_of(args: argparse.Namespace, out_dir_field: str | None = None) -> list[str]:
    """The config overrides: the command's own flags first, so an explicit ``--section.field`` wins."""
    extra = list(getattr(args, "overrides", []) or [])
    flags: dict[str, str] = dict(getattr(args, "config_flags", None) or {})
    if out_dir_field is not None:
        flags.setdefault("out-dir", out_dir_field)
    first: list[str] = []
    for flag, field in flags.items():
        value: Any = getattr(args, flag.replace("-", "_"), None)
        if value is not None:
            first += [f"--{field}", value]
    return [*first, *extra]


def print_outputs(result: Any) -> None:
    """The two closing lines of a training command: where the model and the metrics went."""
    print(f"model saved to {result.model_dir}")
    print(f"metrics written to {result.metrics_path}")


def print_pretraining(objectives: list[str], train: Any, where: str = "", rate: str = "") -> None:
    """``mlm+itc: 200 steps{where}, loss 9.1 -> 4.2{rate}``: a pretraining run's losses, first to last."""
    losses = train.losses
    print(f"{'+'.join(objectives)}: {train.final_step} steps{where}, loss {losses[0]:.3f} -> {losses[-1]:.3f}{rate}")
