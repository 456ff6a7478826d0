"""The ``corpus`` section: unlabelled text for pretraining and tokenizer training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hybridformer.config import check
from hybridformer.data import load_builtin

__all__ = ["CorpusConfig", "load_corpus"]


@dataclass
class CorpusConfig:
    """Where the texts come from."""

    source: Literal["sentiment", "bbc", "file"] = "bbc"
    """A built-in set (its training split only, so its test texts stay unseen) or ``file``."""
    file: str | None = None
    """``source=file``: a UTF-8 text file, one document per line (blank lines are skipped)."""
    max_documents: int | None = None
    """Keep only the first this many documents (None: all)."""
    split_seed: int = 0
    """Seed of the built-in sets' fixed train/validation/test split."""

    def __post_init__(self) -> None:
        check(
            self.max_documents is None or self.max_documents >= 1,
            "max_documents",
            f"must be >= 1 or None, got {self.max_documents}",
        )
        check(
            self.source == "file" or self.file is None,
            "file",
            f"is only used with source=file (source is {self.source!r})",
        )
        check(self.source != "file" or self.file is not None, "file", "source=file needs a text file")


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"corpus.file: no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"corpus.file: {path} is not valid UTF-8 ({err.reason} at byte {err.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_corpus(config: CorpusConfig) -> list[str]:
    """The configured documents, in a fixed order.

    Raises:
        FileNotFoundError: the file or a data package is missing.
        ValueError: the file is not UTF-8 or holds no text.
    """
    if config.source == "file":
        texts = _read_lines(Path(config.file))  # type: ignore[arg-type]
        if not texts:
            raise ValueError(f"corpus.file: {config.file} holds no text (it is empty or blank)")
    else:
        texts = list(load_builtin(config.source, seed=config.split_seed).train.texts)
    return texts[: config.max_documents] if config.max_documents is not None else texts
