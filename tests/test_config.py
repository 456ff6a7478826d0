"""The config machinery: typed loading, overrides and one clear error per bad field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from hybridformer.attention import AttentionConfig
from hybridformer.config import (
    ConfigError,
    apply_overrides,
    check,
    from_dict,
    load_config,
    parse_overrides,
    save_config,
    to_dict,
)


@dataclass
class OptimSection:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "constant"] = "cosine"

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")


@dataclass
class RunConfig:
    name: str = "run"
    steps: int = 10
    bf16: bool = False
    tags: list[str] = field(default_factory=list)
    init_from: Path | None = None
    scales: dict[str, float] = field(default_factory=lambda: {"head": 10.0})
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    optim: OptimSection = field(default_factory=OptimSection)


def test_defaults_roundtrip_through_dict() -> None:
    cfg = RunConfig()
    again = from_dict(RunConfig, to_dict(cfg))
    assert again == cfg


def test_yaml_then_cli_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("steps: 20\nattention:\n  window: 64\n  local: sliding\noptim:\n  lr: 0.01\n")
    cfg = load_config(
        RunConfig,
        path,
        ["--attention.window", "32", "--bf16", "true", "--optim.betas=0.8,0.9", "--tags", "a,b"],
    )
    assert cfg.steps == 20
    assert cfg.attention.window == 32 and cfg.attention.local == "sliding"
    assert cfg.optim.lr == 0.01 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.bf16 is True and cfg.tags == ["a", "b"]


def test_toml_and_save_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('name = "x"\ninit_from = "/tmp/ckpt"\n[attention]\nglobal_k = 16\n')
    cfg = load_config(RunConfig, path)
    assert cfg.name == "x" and cfg.init_from == Path("/tmp/ckpt") and cfg.attention.global_k == 16
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(RunConfig, tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--attention.windw", "3"], "attention.windw: unknown field of AttentionConfig"),
        (["--attention.window", "abc"], "attention.window: expected an integer, got 'abc'"),
        (["--attention.window", "0"], "attention.window: must be >= 1, got 0"),
        (["--attention.local", "ring"], "attention.local: must be one of ['block', 'sliding']"),
        (["--bf16", "maybe"], "bf16: expected a boolean"),
        (["--optim.lr", "-1"], "optim.lr: must be > 0, got -1.0"),
        (["--nonsense", "1"], "nonsense: unknown field of RunConfig"),
        (["--steps"], "steps: override is missing its value"),
        (["steps", "3"], "unexpected argument 'steps'"),
        (["--attention.n_heads", "7"], "attention.n_heads: must divide d_model=512, got 7"),
    ],
)
def test_bad_values_name_the_field(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, overrides=overrides)
    assert message in str(err.value)


def test_a_mapping_on_the_command_line_replaces_the_files(tmp_path: Path) -> None:
    """A dict field takes a YAML flow mapping from the command line, replacing (not merging into) the file's."""
    path = tmp_path / "run.yaml"
    path.write_text("scales:\n  head: 100\n  attention.scorer: 5\n")
    assert load_config(RunConfig, path).scales == {"head": 100, "attention.scorer": 5}
    assert load_config(RunConfig, path, ["--scales", "{}"]).scales == {}
    assert load_config(RunConfig, path, ["--scales", "{body: 2.5}"]).scales == {"body": 2.5}
    with pytest.raises(ConfigError, match=r"scales: expected a mapping such as '\{\}'"):
        load_config(RunConfig, path, ["--scales", "{body: [2"])
    with pytest.raises(ConfigError, match="scales: expected a mapping, got 3"):
        load_config(RunConfig, path, ["--scales", "3"])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(RunConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(RunConfig, bad)
    wrong = tmp_path / "run.ini"
    wrong.write_text("x")
    with pytest.raises(ConfigError, match="unsupported config format"):
        load_config(RunConfig, wrong)


def test_apply_overrides_revalidates() -> None:
    cfg = apply_overrides(RunConfig(), {"attention.window": 16})
    assert cfg.attention.window == 16
    with pytest.raises(ConfigError, match="attention.global_k: must be >= 0"):
        apply_overrides(cfg, {"attention.global_k": -2})
    assert parse_overrides(["--a.b-c", "1", "--d=2"]) == {"a.b_c": "1", "d": "2"}
