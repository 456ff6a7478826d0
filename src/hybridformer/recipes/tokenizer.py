"""Train a byte-level BPE tokenizer on a corpus and save it as a folder ``load_tokenizer`` reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hybridformer.config import check
from hybridformer.data import train_bpe_tokenizer
from hybridformer.recipes.corpus import CorpusConfig, load_corpus

__all__ = ["TokenizerConfig", "TokenizerResult", "train_tokenizer"]


@dataclass
class TokenizerConfig:
    """A BPE tokenizer to train."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """The training texts."""
    vocab_size: int = 8000
    """Target vocabulary size (256 byte symbols and 5 special tokens included)."""
    min_frequency: int = 2
    """A pair must occur this often to be merged."""
    model_max_length: int = 512
    """The longest input the saved tokenizer reports."""
    out_dir: str = "runs/tokenizer"
    """The folder written (``tokenizer.json``, ``tokenizer_config.json``)."""

    def __post_init__(self) -> None:
        check(
            self.vocab_size > 261,
            "vocab_size",
            f"must exceed 261 (256 bytes + 5 special tokens), got {self.vocab_size}",
        )
        check(self.min_frequency >= 1, "min_frequency", f"must be >= 1, got {self.min_frequency}")
        check(self.model_max_length >= 2, "model_max_length", f"must be >= 2, got {self.model_max_length}")


@dataclass
class TokenizerResult:
    """What :func:`train_tokenizer` returns."""

    out_dir: Path
    """The tokenizer folder."""
    vocab_size: int
    """Tokens in the trained vocabulary (a small corpus may give fewer than asked)."""
    n_documents: int
    """Documents it was trained on."""


def train_tokenizer(config: TokenizerConfig) -> TokenizerResult:
    """Train the tokenizer on the corpus and save it to ``config.out_dir``."""
    texts = load_corpus(config.corpus)
    tokenizer = train_bpe_tokenizer(
        texts,
        config.vocab_size,
        config.out_dir,
        min_frequency=config.min_frequency,
        model_max_length=config.model_max_length,
    )
    return TokenizerResult(out_dir=Path(config.out_dir), vocab_size=len(tokenizer), n_documents=len(texts))
