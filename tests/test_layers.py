"""The layers contract of pyproject.toml (STYLE.md's order) holds, and would catch an upward import.

import-linter (``lint-imports``) reads the package's import graph statically (nothing is imported);
the second test lints a copy of the package with one upward import added, so a contract that let
everything through would fail here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(src: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], capture_output=True, text=True,
                          env=env, cwd=config.parent, timeout=120)


def test_layers_contract_is_kept() -> None:
    result = _lint(ROOT / "src", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    copy = tmp_path / "src" / "hybridformer"
    shutil.copytree(ROOT / "src" / "hybridformer", copy, ignore=shutil.ignore_patterns("__pycache__"))
    outputs = copy / "models" / "outputs.py"
    outputs.write_text(outputs.read_text() + "\nfrom hybridformer.serve import models as _served  # upward\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = _lint(tmp_path / "src", tmp_path / "pyproject.toml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "hybridformer.models is not allowed to import hybridformer.serve" in result.stdout
    assert "hybridformer.models.outputs -> hybridformer.serve.models" in result.stdout
