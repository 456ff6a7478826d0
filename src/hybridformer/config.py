"""Typed configuration: dataclass sections, YAML/TOML loading, ``--section.field value`` overrides.

Every config in hybridformer is a (possibly nested) dataclass. Sections validate themselves in
``__post_init__`` and raise :class:`ConfigError` naming the offending field. This module holds the
generic machinery only; each subsystem defines its own section next to its code
(``attention/config.py``, ``sparsity/config.py``, ...).

Typical use::

    cfg = load_config(FinetuneConfig, path="configs/sentiment.yaml",
                      overrides=["--model.attention.window", "128"])
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from hybridformer.io import write_json, write_text

__all__ = [
    "ConfigError",
    "check",
    "from_dict",
    "to_dict",
    "load_config",
    "parse_overrides",
    "apply_overrides",
    "save_config",
    "partial_config",
    "set_fields",
    "as_partial",
    "required_field",
    "check_required",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is unknown, ill-typed or out of range. The message names the field."""


def check(condition: bool, field: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``field`` unless ``condition`` holds.

    Sections call this from ``__post_init__``: ``check(self.window >= 1, "window", f"must be >= 1, got {self.window}")``.
    """
    if not condition:
        raise ConfigError(f"{field}: {message}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, field: str) -> Any:
    """Convert ``value`` (from YAML/TOML/CLI) to the annotated type ``tp`` or raise ConfigError."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"{field}: must be one of {list(choices)}, got {value!r}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:  # `T | None`: T's own message says what is wrong
            return _convert(value, options[0], field)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, field)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{field}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and getattr(tp, "SHORTHAND", None):
            value = {tp.SHORTHAND: value}  # `model: tiny` sets the section's shorthand field
        if not isinstance(value, dict):
            raise ConfigError(f"{field}: expected a mapping for section {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=f"{field}.")
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{field}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{field}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{field}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        elem = args[0] if args else Any
        items = [_convert(v, elem, f"{field}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if isinstance(value, str):  # from the command line: a YAML flow mapping, "{}" or "{a: 1, b: 2}"
            value = _flow_mapping(value, field)
        if not isinstance(value, dict):
            raise ConfigError(f"{field}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{field}: expected a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{field}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{field}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{field}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{field}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{field}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{field}: expected a path, got {value!r}")
    return value


def required_field(**kwargs: Any) -> Any:
    """A field that defaults to None but must be set before the config runs (:func:`check_required`).

    ``model_dir: str | None = required_field()``; ``--help`` shows it as ``required`` and leaving it
    out of a loaded config is one :class:`ConfigError` naming it.
    """
    metadata = {**kwargs.pop("metadata", {}), "required": True}
    return dataclasses.field(default=None, metadata=metadata, **kwargs)


def check_required(cfg: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the first :func:`required_field` of ``cfg`` (nested) left None."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("required") and value is None:
            from hybridformer.config_help import field_docs, one_line

            doc = one_line(field_docs(type(cfg)).get(f.name, "")).removeprefix("Required: ")
            raise ConfigError(f"{prefix}{f.name}: is required" + (f" ({doc.rstrip('.')})" if doc else ""))
        if dataclasses.is_dataclass(value):
            check_required(value, f"{prefix}{f.name}.")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping, converting types; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown field of {cls.__name__} (known: {', '.join(sorted(fields))})"
        )
    kwargs = {name: _convert(value, hints[name], f"{prefix}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if prefix and not str(err).startswith(prefix):
            raise ConfigError(f"{prefix}{err}") from None
        raise


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (JSON/YAML friendly) of a config dataclass."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def _read_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: invalid TOML: {err}") from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON: {err}") from None
    else:
        raise ConfigError(f"{path}: unsupported config format {suffix!r} (use .yaml, .yml, .toml or .json)")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML, TOML or JSON config file (before any dataclass reads it).

    Raises:
        ConfigError: no such file, invalid syntax or an unsupported suffix (names the file).
    """
    return _read_file(path)


def _flow_mapping(text: str, field: str) -> Any:
    """A mapping given on the command line as YAML flow syntax (``{}``, ``{attention.scorer: 100}``)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{field}: expected a mapping such as '{{}}' or '{{key: value}}', got {text!r} ({exc})") from exc


def parse_overrides(args: list[str]) -> dict[str, str]:
    """Parse ``["--a.b", "1", "--c=2"]`` into ``{"a.b": "1", "c": "2"}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: overrides look like --section.field value")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"{key}: override is missing its value")
            value = args[i + 1]
            i += 2
        out[key.replace("-", "_")] = value
    return out


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _shorthand_key(cls: type, dotted: str) -> str:
    """``model`` -> ``model.name`` when ``model`` is a section with ``SHORTHAND = "name"`` (so
    ``--model tiny`` and ``--model.image.weights w.pth`` can be given together)."""
    tp: Any = cls
    for part in dotted.split("."):
        hints = get_type_hints(tp) if dataclasses.is_dataclass(tp) else {}
        tp = hints.get(part)
        if tp is None:
            return dotted
    shorthand = getattr(tp, "SHORTHAND", None) if dataclasses.is_dataclass(tp) else None
    return f"{dotted}.{shorthand}" if shorthand else dotted


def apply_overrides(cfg: T, overrides: dict[str, Any] | list[str]) -> T:
    """Return a new config with dotted overrides applied and re-validated."""
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    data = to_dict(cfg)
    patch: dict[str, Any] = {}
    for key, value in overrides.items():
        _set_path(patch, _shorthand_key(type(cfg), key), value)
    return from_dict(type(cfg), _merge(data, patch))


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None
) -> T:
    """Load ``cls`` from defaults, then a YAML/TOML/JSON file, then dotted overrides.

    Raises:
        ConfigError: an unknown field, a bad value, or a :func:`required_field` left unset.
    """
    data: dict[str, Any] = to_dict(cls()) if _has_defaults(cls) else {}
    if path is not None:
        data = _merge(data, _read_file(path))
    cfg = from_dict(cls, data)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    check_required(cfg)
    return cfg


def _has_defaults(cls: type) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
        if f.init
    )


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config as YAML (or JSON when the suffix is .json)."""
    data = to_dict(cfg)
    if Path(path).suffix.lower() == ".json":
        write_json(path, data)
    else:
        import yaml

        write_text(path, yaml.safe_dump(data, sort_keys=False))


_PARTIALS: dict[type, type] = {}


def partial_config(cls: type) -> type:
    """A typed "changes to ``cls``" section: the same fields, each ``T | None`` defaulting to None (unset).

    For sections that modify a config held elsewhere (a checkpoint's attention settings): values are
    converted and checked against the field's real type, unknown names are refused, and
    :func:`set_fields` gives only what was set. The class is made once per ``cls`` and named
    ``<cls>Changes``; ``None`` cannot be set as a value (it means "keep").
    """
    if cls not in _PARTIALS:
        hints = get_type_hints(cls)
        fields = [
            (f.name, hints[f.name] | None, dataclasses.field(default=None))
            for f in dataclasses.fields(cls)
            if f.init
        ]
        partial = dataclasses.make_dataclass(f"{cls.__name__}Changes", fields)
        partial.__doc__ = f"Changes to a {cls.__name__}: each field as documented there; None keeps the value."
        partial.__module__ = cls.__module__
        partial.__partial_of__ = cls  # its fields are documented in cls's source
        _PARTIALS[cls] = partial
    return _PARTIALS[cls]


def set_fields(partial: Any) -> dict[str, Any]:
    """The fields of a :func:`partial_config` instance that were set (not None), by name."""
    return {f.name: getattr(partial, f.name) for f in dataclasses.fields(partial) if getattr(partial, f.name) is not None}


def as_partial(cls: type, value: Any, field: str) -> Any:
    """``value`` as a ``partial_config(cls)`` instance: passed through, or built from a mapping."""
    partial = partial_config(cls)
    if isinstance(value, partial):
        return value
    if isinstance(value, dict):
        return from_dict(partial, value, prefix=f"{field}.")
    raise ConfigError(f"{field}: expected a mapping of {cls.__name__} fields, got {value!r}")
