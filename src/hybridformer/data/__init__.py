"""Data: the embedded real text sets, the user's own files, tokenizers, collators and batch samplers.

Quick start::

    from hybridformer.data import load_builtin, minilm_tokenizer, TextCollator
    splits = load_builtin("sentiment")                 # DatasetSplits(train, validation, test)
    tokenizer = minilm_tokenizer()
    collate = TextCollator(tokenizer, max_length=128)      # -> {"input_ids", "attention_mask", "labels", ...}
    sampler = LengthBucketBatchSampler(token_lengths(splits.train, tokenizer, 128), batch_size=32)
"""

from .batches import iterate_batches
from .collate import MLMCollator, TextCollator, token_lengths
from .dataset import DatasetSplits, TextDataset, TextExample
from .files import DataFileError, load_text_file
from .samplers import LengthBucketBatchSampler, ShuffledBatchSampler
from .sources import MissingDataError, data_dir, minilm_path
from .splits import split_dataset, stable_hash, take_subset
from .text_datasets import (
    BBC_LABELS,
    BUILTIN_DATASETS,
    PAIR_LABELS,
    SENTIMENT_LABELS,
    bbc_splits,
    bbc_topic_pair_splits,
    load_bbc,
    load_builtin,
    load_sentiment,
    sentiment_splits,
)
from .tokenizer import load_tokenizer, minilm_tokenizer, train_bpe_tokenizer

__all__ = [
    "iterate_batches",
    "BBC_LABELS",
    "BUILTIN_DATASETS",
    "DataFileError",
    "DatasetSplits",
    "LengthBucketBatchSampler",
    "MLMCollator",
    "MissingDataError",
    "PAIR_LABELS",
    "SENTIMENT_LABELS",
    "ShuffledBatchSampler",
    "TextCollator",
    "TextDataset",
    "TextExample",
    "bbc_splits",
    "bbc_topic_pair_splits",
    "data_dir",
    "load_bbc",
    "load_builtin",
    "load_sentiment",
    "load_text_file",
    "load_tokenizer",
    "minilm_path",
    "minilm_tokenizer",
    "sentiment_splits",
    "split_dataset",
    "stable_hash",
    "take_subset",
    "token_lengths",
    "train_bpe_tokenizer",
]
