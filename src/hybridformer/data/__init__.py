"""Data: the embedded real text and image sets, the user's own files, tokenizers, collators and samplers.

Images, VQA and video (see docs/data.md for what is real and what is constructed)::

    from hybridformer.data import load_image_text, vqa_splits, moving_mnist_splits, ImageTextCollator
    pairs = load_image_text("mnist5k")          # Splits(train, validation, test) of ImageTextExample
    vqa = vqa_splits("mnist5k")                 # VQA-v2 layout files written, then read back
    clips = moving_mnist_splits(num_frames=16)  # constructed Moving-MNIST-style clips of real digits
    batch = ImageTextCollator(minilm_tokenizer())([pairs.train[i] for i in range(32)])

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
from .image_sources import FASHION_LABELS, MNIST_LABELS, fashion_mnist_available, load_fashion_mnist, load_mnist5k
from .image_text import (
    IMAGE_TEXT_DATASETS,
    ImageTextDataset,
    ImageTextExample,
    Splits,
    fashion_image_text_splits,
    load_image_text,
    mnist_image_text_splits,
)
from .images import ImageInputError, load_image, load_video
from .multimodal_collate import ImageTextCollator, PixelSpec, VideoTextCollator, VQACollator
from .moving_mnist import DIRECTIONS, MovingDigits, VideoExample, moving_mnist_splits
from .openclipart import openclipart_splits
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
from .tokenizer import load_tokenizer, minilm_tokenizer, resolve_tokenizer, train_bpe_tokenizer
from .vqa import VQADataset, VQAExample, answer_vocabulary, coco_image_lookup, read_vqa, write_vqa
from .vqa_files import read_vqa_jsonl, read_vqa_v2
from .vqa_generate import VQA_SETS, easy_vqa_splits, vqa_splits

__all__ = [
    "BBC_LABELS",
    "BUILTIN_DATASETS",
    "DIRECTIONS",
    "DataFileError",
    "DatasetSplits",
    "FASHION_LABELS",
    "IMAGE_TEXT_DATASETS",
    "ImageInputError",
    "ImageTextCollator",
    "ImageTextDataset",
    "ImageTextExample",
    "LengthBucketBatchSampler",
    "MLMCollator",
    "MNIST_LABELS",
    "MissingDataError",
    "MovingDigits",
    "PAIR_LABELS",
    "PixelSpec",
    "SENTIMENT_LABELS",
    "ShuffledBatchSampler",
    "Splits",
    "TextCollator",
    "TextDataset",
    "TextExample",
    "VQACollator",
    "VQADataset",
    "VQAExample",
    "VQA_SETS",
    "VideoExample",
    "VideoTextCollator",
    "answer_vocabulary",
    "bbc_splits",
    "bbc_topic_pair_splits",
    "coco_image_lookup",
    "data_dir",
    "easy_vqa_splits",
    "fashion_image_text_splits",
    "fashion_mnist_available",
    "iterate_batches",
    "load_bbc",
    "load_builtin",
    "load_fashion_mnist",
    "load_image",
    "load_image_text",
    "load_mnist5k",
    "load_sentiment",
    "load_text_file",
    "load_tokenizer",
    "load_video",
    "minilm_path",
    "minilm_tokenizer",
    "resolve_tokenizer",
    "mnist_image_text_splits",
    "moving_mnist_splits",
    "openclipart_splits",
    "read_vqa",
    "read_vqa_jsonl",
    "read_vqa_v2",
    "sentiment_splits",
    "split_dataset",
    "stable_hash",
    "take_subset",
    "token_lengths",
    "train_bpe_tokenizer",
    "vqa_splits",
    "write_vqa",
]
