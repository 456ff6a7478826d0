"""Help from the dataclasses: attribute docstrings, field lines, required fields, flag names in errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from hybridformer.config import ConfigError, load_config, partial_config, required_field
from hybridformer.config_help import describe_fields, field_docs, field_paths, name_flag


@dataclass
class Inner:
    """A nested section."""

    size: int = 3
    """How big. Further sentences stay out of the one-line help."""
    mode: Literal["a", "b"] = "a"
    """Which mode (e.g. ``a``)."""


@dataclass
class Base:
    name: str | None = required_field()
    """Required: what to call it."""


@dataclass
class Outer(Base):
    inner: Inner = field(default_factory=Inner)
    """The inner part."""
    changes: partial_config(Inner) = field(default_factory=partial_config(Inner))  # type: ignore[valid-type]
    """Changes to something."""
    ratio: float = 0.5
    """A share."""


def test_docs_come_from_the_source_bases_and_partials_included() -> None:
    assert field_docs(Outer) == {
        "name": "Required: what to call it.", "inner": "The inner part.", "changes": "Changes to something.",
        "ratio": "A share.",
    }
    assert field_docs(partial_config(Inner))["size"].startswith("How big.")


def test_describe_fields_lists_nested_sections_with_types_defaults_and_one_line() -> None:
    lines = describe_fields(Outer(name=None), aliases={"name": "--the-name"})
    assert lines[:2] == [
        "  --name (or --the-name) str|None (required): Required: what to call it.",
        "  --ratio float (default 0.5): A share.",
    ]
    assert "inner: The inner part." in lines
    assert "  --inner.size int (default 3): How big." in lines
    assert "  --inner.mode {a,b} (default a): Which mode (e.g. a)." in lines
    assert "  --changes.size int|None (default None): How big." in lines
    assert field_paths(Outer) >= {"name", "inner.size", "changes.mode", "ratio"}


def test_required_field_and_flag_names() -> None:
    with pytest.raises(ConfigError, match=r"^name: is required \(what to call it\)$"):
        load_config(Outer)
    assert load_config(Outer, overrides=["--name", "x", "--inner.size", "4"]).inner.size == 4
    assert name_flag("inner.size: must be >= 1", Outer) == "--inner.size: must be >= 1"
    assert name_flag("name: is required", Outer, {"name": "--the-name"}) == "--the-name: is required"
    assert name_flag("config file not found: x.yaml", Outer) == "config file not found: x.yaml"
    assert name_flag("size: not a top-level field", Outer) == "size: not a top-level field"
