"""Collators (dynamic padding, truncation, pairs, MLM) with the real MiniLM tokenizer."""

from __future__ import annotations

import pytest
import torch

from hybridformer.data import MLMCollator, TextCollator, TextExample, minilm_tokenizer, token_lengths
from hybridformer.losses import IGNORE_INDEX


@pytest.fixture(scope="module")
def tok():
    return minilm_tokenizer()


def test_dynamic_padding_to_the_batch_max(tok):
    batch = TextCollator(tok)([TextExample("a fine film", 1), TextExample("bad", 0)])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape == (2, 5)  # [CLS] a fine film [SEP]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["input_ids"][1].tolist() == [101, 2919, 102, 0, 0]
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    padded = TextCollator(tok, pad_to_multiple_of=8)([TextExample("bad", 0)])
    assert padded["input_ids"].shape == (1, 8)


def test_truncation_and_pairs(tok):
    long = TextExample("word " * 100, 0)
    assert TextCollator(tok, max_length=16)([long])["input_ids"].shape == (1, 16)
    pair = TextCollator(tok, max_length=12)([TextExample("one two three", 1, "x " * 50)])
    ids, types = pair["input_ids"][0].tolist(), pair["token_type_ids"][0].tolist()
    assert len(ids) == 12 and ids.count(102) == 2
    assert ids[:5] == [101, 2028, 2048, 2093, 102]  # the longer text lost tokens first
    assert types == [0] * 5 + [1] * 7
    with pytest.raises(ValueError, match="1 of 2 examples have a text_pair"):
        TextCollator(tok)([TextExample("a", 0, "b"), TextExample("c", 1)])
    with pytest.raises(ValueError, match="empty batch"):
        TextCollator(tok)([])


def test_mlm_collator_masks_only_real_tokens(tok):
    texts = ["the movie was long but the ending made it worth every minute"] * 40 + ["short"]
    torch.manual_seed(0)
    batch = MLMCollator(tok, max_length=32)(texts)
    targets = batch["labels"] != IGNORE_INDEX
    assert targets.any()
    special = torch.isin(batch["input_ids"], torch.tensor([101, 102])) & ~targets
    assert not (targets & (batch["attention_mask"] == 0)).any()
    assert not targets[:, 0].any()  # [CLS] never a target
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()  # padding untouched
    assert special.sum() >= 2 * len(texts) - 1
    # Same global seed -> same masks (the Trainer's RNG checkpointing relies on this).
    torch.manual_seed(0)
    again = MLMCollator(tok, max_length=32)(texts)
    assert torch.equal(again["input_ids"], batch["input_ids"])
    assert torch.equal(again["labels"], batch["labels"])


def test_token_lengths(tok):
    assert token_lengths(["a fine film", "word " * 100], tok, max_length=64) == [5, 64]
