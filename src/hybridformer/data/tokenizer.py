"""Tokenizers from local folders (Hugging Face format), and training our own byte-level BPE.

Everything is offline: folders are read with ``local_files_only=True`` and ``HF_HUB_OFFLINE`` defaults
to 1. Loaded tokenizers have any padding/truncation baked into ``tokenizer.json`` switched off (MiniLM's
pads everything to 128); :class:`hybridformer.data.TextCollator` pads and truncates per batch instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .sources import minilm_path

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["has_tokenizer", "load_tokenizer", "minilm_tokenizer", "resolve_tokenizer", "train_bpe_tokenizer", "BPE_SPECIAL_TOKENS"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BPE_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "pad_token": "<pad>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
"""RoBERTa's special tokens; they get ids 0..4 in this order (``<s>``=0, ``<pad>``=1, ...)."""


def _unbake(tokenizer: PreTrainedTokenizerBase, model_max_length: int | None) -> PreTrainedTokenizerBase:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_padding()
        backend.no_truncation()
    if model_max_length is not None:
        tokenizer.model_max_length = model_max_length
    return tokenizer


def load_tokenizer(path: str | Path, *, model_max_length: int | None = None) -> PreTrainedTokenizerBase:
    """Load a Hugging Face tokenizer from a local folder (``tokenizer.json`` and/or ``vocab.txt`` + configs).

    Args:
        path: folder written by ``save_pretrained`` (a BERT/RoBERTa checkpoint folder, or the output
            of :func:`train_bpe_tokenizer`).
        model_max_length: override the longest input the tokenizer reports (e.g. 2048 once position
            embeddings were extended); None keeps the folder's value.

    Returns:
        A ``transformers`` tokenizer with no built-in padding or truncation.

    Raises:
        ValueError: ``path`` is not a folder or holds no tokenizer files.
    """
    from transformers import AutoTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"path: tokenizer folder not found: {folder}")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "vocab.json")):
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "(empty)"
        raise ValueError(f"path: {folder} holds no tokenizer.json, vocab.txt or vocab.json; found: {present}")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return _unbake(tokenizer, model_max_length)


def minilm_tokenizer(*, model_max_length: int | None = None) -> PreTrainedTokenizerBase:
    """The WordPiece tokenizer of the bundled MiniLM checkpoint (BERT uncased, 30,522 tokens)."""
    return load_tokenizer(minilm_path(), model_max_length=model_max_length)


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: str | Path,
    *,
    min_frequency: int = 2,
    model_max_length: int = 512,
) -> PreTrainedTokenizerBase:
    """Train a RoBERTa-style byte-level BPE tokenizer on ``texts`` and save it to ``out_dir``.

    Byte-level pre-tokenization (no unknown characters: any UTF-8 text round-trips through
    ``decode``), special tokens :data:`BPE_SPECIAL_TOKENS` with ``<mask>`` stripping the space before
    it, and RoBERTa's templates ``<s> A </s>`` / ``<s> A </s></s> B </s>``. The folder
    (``tokenizer.json`` + ``tokenizer_config.json``) loads back with :func:`load_tokenizer` or
    ``AutoTokenizer.from_pretrained``.

    Args:
        texts: training corpus, one document per item (any iterable; read once).
        vocab_size: target vocabulary size including the 256 byte symbols and 5 special tokens; a
            small corpus may yield fewer merges.
        out_dir: folder to write (created if needed).
        min_frequency: a pair must occur this often to be merged.
        model_max_length: the longest input the saved tokenizer reports.

    Returns:
        The trained tokenizer, as loaded back from ``out_dir``.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    n_reserved = 256 + len(BPE_SPECIAL_TOKENS)
    if vocab_size <= n_reserved:
        raise ValueError(f"vocab_size: must exceed {n_reserved} (256 bytes + special tokens), got {vocab_size}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency: must be >= 1, got {min_frequency}")
    special = [
        AddedToken(tok, special=True, normalized=False, lstrip=(key == "mask_token"))
        for key, tok in BPE_SPECIAL_TOKENS.items()
    ]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.get_vocab_size() <= n_reserved:
        raise ValueError("texts: the corpus is empty or too small to learn any BPE merge")
    bos, eos = BPE_SPECIAL_TOKENS["bos_token"], BPE_SPECIAL_TOKENS["eos_token"]
    tokenizer.post_processor = processors.RobertaProcessing(
        (eos, tokenizer.token_to_id(eos)), (bos, tokenizer.token_to_id(bos)), add_prefix_space=False
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        cls_token=bos,
        sep_token=eos,
        model_max_length=model_max_length,
        **BPE_SPECIAL_TOKENS,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(str(out))
    return load_tokenizer(out)


_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")


def has_tokenizer(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved tokenizer (``tokenizer.json``, ``vocab.txt`` or ``vocab.json``)."""
    return any((Path(folder) / name).is_file() for name in _TOKENIZER_FILES)


def resolve_tokenizer(tokenizer: str | None, model_dir: str | Path | None = None) -> PreTrainedTokenizerBase:
    """Load ``tokenizer`` if given, else the one saved in ``model_dir``, else MiniLM's.

    Raises:
        ValueError: the folder holds no tokenizer files.
    """
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    if model_dir is not None and has_tokenizer(model_dir):
        return load_tokenizer(model_dir)
    return load_tokenizer(minilm_path())
