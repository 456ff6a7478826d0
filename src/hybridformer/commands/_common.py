"""What the text commands share: the ``--config`` option and the help text on overrides."""

from __future__ import annotations

import argparse

__all__ = ["add_config_arguments", "overrides_of"]


def add_config_arguments(parser: argparse.ArgumentParser, example: str, out_dir_field: str | None) -> None:
    """Add ``--config`` (and ``--out-dir`` when the command has a run folder) and explain overrides.

    Args:
        parser: the subcommand's parser.
        example: an example config file shown in the help.
        out_dir_field: the dotted config field ``--out-dir`` sets, or None for no ``--out-dir``.
    """
    parser.add_argument("--config", metavar="FILE", help=f"YAML, TOML or JSON config (e.g. {example})")
    if out_dir_field is not None:
        parser.add_argument("--out-dir", metavar="DIR", help=f"where outputs go (the same as --{out_dir_field})")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Every config field can be set on the command line as --section.field VALUE (after the\n"
        "defaults and the --config file), e.g. --data.task bbc --train.lr 1e-4; lists take commas.\n"
        "An unknown field or a bad value stops with exit code 2 and names the field."
    )


def overrides_of(args: argparse.Namespace, out_dir_field: str | None) -> list[str]:
    """The config overrides: ``--out-dir`` first, so an explicit ``--<out_dir_field>`` wins over it."""
    extra = list(getattr(args, "overrides", []) or [])
    out_dir = getattr(args, "out_dir", None)
    if out_dir_field is not None and out_dir is not None:
        extra = [f"--{out_dir_field}", out_dir, *extra]
    return extra
