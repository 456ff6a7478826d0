"""Help text and flag names from the config dataclasses themselves.

A field's documentation is the string literal written under it (PEP 257 "attribute docstring")::

    lr: float = 5e-5
    '''Peak learning rate of AdamW (reached after warmup).'''

:func:`field_docs` reads them (``ast`` over ``inspect.getsource``, cached per class, base classes
included), :func:`describe_fields` turns a config into ``--section.field TYPE (default X): doc`` lines
for a command's ``--help``, and :func:`name_flag` rewrites an error message that starts with a dotted
field (``data.train_file: ...``) to name the flag a user typed (``--data.train_file: ...``).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
from pathlib import Path
from typing import Any, Literal, Mapping, Union, get_args, get_origin, get_type_hints

__all__ = ["field_docs", "describe_fields", "field_paths", "name_flag", "type_label"]

_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]`'\"])\.\s+(?=[A-Z(])")


def _source_class(cls: type) -> type:
    """The class whose source documents ``cls``'s fields (a ``partial_config`` section's original)."""
    return getattr(cls, "__partial_of__", cls)


@functools.cache
def _own_docs(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if node is None:
        return {}
    docs: dict[str, str] = {}
    body = node.body
    for stmt, nxt in zip(body, body[1:]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """``{field name: its attribute docstring}`` of dataclass ``cls``, base classes included (cached)."""
    docs: dict[str, str] = {}
    for klass in reversed(_source_class(cls).__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_docs(klass))
    return docs


def one_line(doc: str) -> str:
    """The first sentence of ``doc``'s first paragraph, on one line."""
    paragraph = " ".join(doc.split("\n\n")[0].split()).replace("``", "")
    return _SENTENCE_END.split(paragraph, maxsplit=1)[0].rstrip(".") + "." if paragraph else ""


def type_label(tp: Any) -> str:
    """A short name for an annotation: ``int``, ``float|None``, ``{cls,mean}``, ``list[str]``."""
    origin = get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(str(c) for c in get_args(tp)) + "}"
    if origin in (Union, types.UnionType):
        return "|".join("None" if a is type(None) else type_label(a) for a in get_args(tp))
    if origin in (list, tuple, dict):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = ",".join(type_label(a) for a in args)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if tp is Path:
        return "path"
    return getattr(tp, "__name__", str(tp))


def _default_label(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "(empty)"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(empty)"
    return "None" if value is None else str(value)


def _section_class(tp: Any) -> type | None:
    """The dataclass a field's annotation holds (``Section`` or ``Section | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) in (Union, types.UnionType):
        found = [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def describe_fields(config: Any, prefix: str = "", aliases: Mapping[str, str] | None = None) -> list[str]:
    """Help lines for every field of the config instance ``config``, nested sections recursively.

    Each field gives ``  --path TYPE (default X): doc``; a section gives a heading line
    ``path: doc`` and then its own fields. Defaults are ``config``'s values (so a command's own
    defaults show); a field declared :func:`~hybridformer.config.required_field` says ``required``.

    Args:
        config: a dataclass instance (e.g. ``FinetuneConfig()``).
        prefix: dotted path of ``config`` inside its parent (``"train."``), empty at the top.
        aliases: ``{dotted field: flag}`` for fields with a flag of their own (``{"model_dir": "--model-dir"}``).
    """
    cls = type(config)
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    aliases = aliases or {}
    lines: list[str] = []
    sections: list[str] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        path, value = f"{prefix}{f.name}", getattr(config, f.name)
        if _section_class(hints[f.name]) is not None and dataclasses.is_dataclass(value):
            sections.append(f.name)
            continue
        flag = f"--{path}" + (f" (or {aliases[path]})" if path in aliases else "")
        default = "required" if f.metadata.get("required") else f"default {_default_label(value)}"
        lines.append(f"  {flag} {type_label(hints[f.name])} ({default}): {one_line(docs.get(f.name, ''))}")
    for name in sections:
        path = f"{prefix}{name}"
        lines.append("")
        lines.append(f"{path}: {one_line(docs.get(name, ''))}")
        lines.extend(describe_fields(getattr(config, name), f"{path}.", aliases))
    return lines


@functools.cache
def field_paths(cls: type) -> frozenset[str]:
    """Every dotted field path of dataclass ``cls`` (sections and their fields, recursively)."""
    paths: set[str] = set()
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        paths.add(f.name)
        section = _section_class(hints[f.name])
        if section is not None:
            paths.update(f"{f.name}.{p}" for p in field_paths(section))
    return frozenset(paths)


def name_flag(message: str, cls: type, aliases: Mapping[str, str] | None = None) -> str:
    """``message`` with its leading dotted field written as the flag (``--data.train_file: ...``).

    Messages that do not start with a field of ``cls`` (``config file not found: ...``) are returned
    unchanged; ``aliases`` maps a field to a flag of its own (``{"model_dir": "--model-dir"}``).
    """
    match = re.match(r"([A-Za-z_][\w.]*)(\[\d+\])?(?=:)", message)
    if match is None:
        return message
    path = match.group(1)
    known = field_paths(cls)
    if path not in known:
        return message
    flag = (aliases or {}).get(path, f"--{path}")
    return flag + message[len(path):]
