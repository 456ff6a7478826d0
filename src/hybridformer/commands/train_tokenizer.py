"""``hybridformer train-tokenizer``: train a byte-level BPE tokenizer on a corpus.

    hybridformer train-tokenizer --corpus.source bbc --vocab_size 8000 --out-dir runs/bpe
    hybridformer train-tokenizer --corpus.source file --corpus.file texts.txt --out-dir runs/bpe
"""

from __future__ import annotations

import argparse

from hybridformer.commands._common import add_config_arguments, overrides_of
from hybridformer.config import load_config

OUT_DIR_FIELD = "out_dir"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hybridformer.recipes import TokenizerConfig

    add_config_arguments(parser, "a tokenizer.yaml with corpus, vocab_size, out_dir", OUT_DIR_FIELD, TokenizerConfig)


def run(args: argparse.Namespace) -> int:
    from hybridformer.recipes import TokenizerConfig, train_tokenizer

    config = load_config(TokenizerConfig, args.config, overrides_of(args, OUT_DIR_FIELD))
    result = train_tokenizer(config)
    print(f"trained a {result.vocab_size}-token BPE vocabulary on {result.n_documents} documents")
    print(f"tokenizer saved to {result.out_dir}")
    return 0
