"""The one atomic writer for every file hybridformer saves: the old content or the whole new one, never a mix.

The new content goes to a temporary file beside the target, is fsynced, ``os.replace``-d onto the
target (atomic within one filesystem), and the directory entry is fsynced too, so a crash or a kill
at any point leaves either the previous file or the complete new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "fsync_path", "write_json", "write_text"]


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write a file so that ``path`` holds either its old content or the complete new one, never a mix.

    ``write(tmp)`` writes the new content to a temporary file beside ``path``; it is fsynced and
    ``os.replace``-d onto ``path``, then the directory entry is fsynced. If ``write`` raises, the
    temporary file is removed and ``path`` is left as it was.

    Args:
        path: destination file (its folder is created).
        write: callback writing the complete content to the path it receives.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """:func:`atomic_write` of ``data`` as indented JSON with a final newline."""
    return write_text(path, json.dumps(data, indent=2) + "\n")
