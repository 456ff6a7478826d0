"""What a reader does with a bad file in the user's data: stop with one error naming it, or skip it
and say so (``--data.on_bad_file error|skip``).

A skipped file is recorded in a :class:`BadFiles` log (path + reason), which the run prints in its
summary and writes into ``metrics.json``. A streamed set (WebDataset shards) meets its bad members
inside DataLoader worker processes; a log with a ``spool`` file receives their records as JSON lines
appended by every process (one ``write`` per record, ``O_APPEND``), and :meth:`BadFiles.collect`
reads them back in the main process.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["BAD_FILE_POLICIES", "BadFilePolicy", "BadFileError", "BadFile", "BadFiles"]

BadFilePolicy = Literal["error", "skip"]
BAD_FILE_POLICIES = ("error", "skip")
"""``error``: the first bad file stops the run with an error naming it; ``skip``: skipped, counted, listed."""


class BadFileError(ValueError):
    """A file of the user's data is missing, unreadable or malformed (the message names it and says
    how to skip such files)."""


@dataclass(frozen=True)
class BadFile:
    """One skipped file or record."""

    path: str
    """The file (or ``shard.tar:member``, or ``file.csv:line``)."""
    reason: str
    """What is wrong with it."""


@dataclass
class BadFiles:
    """The policy of a run and the files it skipped."""

    policy: BadFilePolicy = "error"
    """``error`` or ``skip`` (see :data:`BAD_FILE_POLICIES`)."""
    spool: Path | None = None
    """A JSON-lines file that worker processes append their records to (streamed sets); None: in memory only."""
    items: list[BadFile] = field(default_factory=list)
    """The skipped files seen by this process (plus the spool's after :meth:`collect`)."""

    def __post_init__(self) -> None:
        if self.policy not in BAD_FILE_POLICIES:
            raise ValueError(f"on_bad_file: must be one of {', '.join(BAD_FILE_POLICIES)}, got {self.policy!r}")

    def bad(self, path: str | Path, reason: str) -> None:
        """Report a bad file: raise :class:`BadFileError` under ``error``, record it under ``skip``."""
        if self.policy == "error":
            raise BadFileError(f"{path}: {reason} (pass --data.on_bad_file skip to skip such files)")
        item = BadFile(str(path), reason)
        self.items.append(item)
        if self.spool is not None:
            line = (json.dumps({"path": item.path, "reason": item.reason}) + "\n").encode()
            fd = os.open(self.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)  # one write per record: lines from several processes never interleave
            finally:
                os.close(fd)

    def collect(self) -> list[BadFile]:
        """Every skipped file: this process's, and the spool's (written by workers), without repeats."""
        seen = {(b.path, b.reason): b for b in self.items}
        if self.spool is not None and self.spool.is_file():
            for line in self.spool.read_text().splitlines():
                record = json.loads(line)
                seen.setdefault((record["path"], record["reason"]), BadFile(record["path"], record["reason"]))
        return list(seen.values())

    def summary(self) -> dict[str, object]:
        """``{"policy", "count", "files": [{"path", "reason"}, ...]}`` for ``metrics.json``."""
        items = self.collect()
        return {"policy": self.policy, "count": len(items), "files": [{"path": b.path, "reason": b.reason} for b in items]}
