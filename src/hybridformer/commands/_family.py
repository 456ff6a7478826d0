"""Which recipe family a ``pretrain`` / ``finetune`` / ``evaluate`` command line runs, from the registry.

The family is the registry's answer for ``--model`` (a flavor name or a folder: its architecture's
family); without ``--model``, the family whose tasks hold ``--task``, else the first (text, then
multimodal) whose objectives hold every known ``--objectives`` entry. The values come from the parsed overrides or the
``--config`` file, never from the raw argv. ``--model REF`` of a text family command is that family's
own field (``model.init_from`` or ``model_dir``).
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Any

from hybridformer.config import ConfigError, parse_overrides, read_config_file

__all__ = ["Recipe", "RECIPES", "add_family_arguments", "family_name", "help_family", "select_family"]


@dataclass(frozen=True)
class Recipe:
    """What a command runs for one family."""

    config: str
    """``module:ConfigClass`` of the recipe's config."""
    example: str
    """An example config file for the help."""
    model_field: str
    """The config field ``--model REF`` sets."""

    def config_class(self) -> type:
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module), name)


RECIPES: dict[tuple[str, str], Recipe] = {
    ("pretrain", "text"): Recipe("hybridformer.recipes:PretrainConfig", "configs/pretrain_mlm.yaml", "model.init_from"),
    ("pretrain", "multimodal"): Recipe("hybridformer.recipes.multimodal_pretrain:MMPretrainConfig",
                                       "a pretrain.yaml with objectives, model, data, train", "model"),
    ("finetune", "text"): Recipe("hybridformer.recipes:FinetuneConfig", "configs/finetune_sentiment.yaml",
                                 "model.init_from"),
    ("finetune", "multimodal"): Recipe("hybridformer.recipes.multimodal_tasks:MMFinetuneConfig",
                                       "a finetune.yaml with task, model, data, train", "model"),
    ("evaluate", "text"): Recipe("hybridformer.recipes:EvaluateConfig", "an evaluate.yaml with model_dir, data, split",
                                 "model_dir"),
    ("evaluate", "multimodal"): Recipe("hybridformer.recipes.multimodal_tasks:MMEvaluateConfig",
                                       "an evaluate.yaml with task, model, data", "model"),
}
"""(command, family) -> its recipe; the registry's families are the keys' second half."""


def _values(overrides: dict[str, Any], config_file: str | None) -> dict[str, Any]:
    values = dict(read_config_file(config_file)) if config_file else {}
    return {**{k: v for k, v in values.items() if not isinstance(v, dict)}, **overrides}


def family_name(overrides: list[str], config_file: str | None = None) -> str:
    """The registry family (``text`` | ``multimodal``) the overrides and config file select.

    Raises:
        FileNotFoundError / ValueError: ``--model`` names neither a flavor nor a model folder.
    """
    from hybridformer.registry import FAMILIES, family_of

    try:
        values = _values(parse_overrides(overrides), config_file)
    except ConfigError:
        return "text"  # a malformed command line: the text recipe's parser names the problem
    if values.get("model") is not None:
        return family_of(str(values["model"])).name
    if values.get("task") is not None:
        return next((f.name for f in FAMILIES.values() if values["task"] in f.tasks), "multimodal")
    # unknown objectives are left to the chosen recipe's check, which names them
    known = {o for f in FAMILIES.values() for o in f.objectives}
    objectives = {o for o in str(values.get("objectives") or "").split(",") if o} & known
    return next(f.name for f in FAMILIES.values() if objectives <= set(f.objectives))


def select_family(command: str, args: argparse.Namespace) -> str:
    """The family ``args`` select for ``command``; ``args.overrides`` get ``--model REF`` renamed to the
    family's model field (``model.init_from`` / ``model_dir`` for the text recipes)."""
    extra = list(getattr(args, "overrides", []) or [])
    family = family_name(extra, getattr(args, "config", None))
    field = RECIPES[(command, family)].model_field
    args.overrides = [f"--{field}" if a == "--model" else a for a in extra]
    return family


def add_family_arguments(command: str, parser: argparse.ArgumentParser, argv: list[str] | None,
                         out_dir_field: str | None, flags: dict[str, tuple[str, str]] | None = None) -> None:
    """``command``'s options, with the config fields of the family its command line selects in ``--help``."""
    from hybridformer.commands._common import add_config_arguments

    recipe = RECIPES[(command, help_family(argv, command))]
    add_config_arguments(parser, recipe.example, out_dir_field, recipe.config_class(), flags)


def help_family(argv: list[str] | None, command: str) -> str:
    """The family a ``--help`` line names (its flags after the command); the text family when unsure."""
    if not argv or command not in argv:
        return "text"
    rest = argv[argv.index(command) + 1 :]
    rest = [a for a in rest if a not in ("-h", "--help")]
    config = rest[rest.index("--config") + 1] if "--config" in rest[:-1] else None
    rest = [a for i, a in enumerate(rest) if a != "--config" and (i == 0 or rest[i - 1] != "--config")]
    try:
        return family_name(rest, config)
    except (FileNotFoundError, ValueError, ConfigError):
        return "text"
