"""Loading the bundled MiniLM tokenizer offline, and training our own byte-level BPE."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from hybridformer.data import load_sentiment, load_tokenizer, minilm_path, minilm_tokenizer, train_bpe_tokenizer


def test_minilm_tokenizer_has_no_baked_in_padding_or_truncation():
    tok = minilm_tokenizer()
    assert len(tok) == 30_522 and tok.mask_token_id == 103
    assert tok.backend_tokenizer.padding is None and tok.backend_tokenizer.truncation is None
    ids = tok.backend_tokenizer.encode("a short one").ids  # the raw backend would pad to 128
    assert ids == [101, 1037, 2460, 2028, 102]
    assert len(tok("word " * 600)["input_ids"]) == 602  # no silent cut at 128 (or 512)
    assert minilm_tokenizer(model_max_length=4096).model_max_length == 4096


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match="path: tokenizer folder not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="holds no tokenizer.json.*found: config.json"):
        load_tokenizer(tmp_path)


def test_bpe_training_round_trips(tmp_path):
    corpus = load_sentiment().texts[:400]
    tok = train_bpe_tokenizer(corpus, vocab_size=600, out_dir=tmp_path / "bpe")
    assert 300 < len(tok) <= 600
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert (tok.pad_token_id, tok.mask_token_id, tok.cls_token_id, tok.sep_token_id) == (1, 4, 0, 2)
    for text in corpus[:50] + ["Ünïcödé — never seen: 日本語 😀"]:
        ids = tok(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2
        assert tok.decode(ids, skip_special_tokens=True) == text  # byte-level: lossless, no <unk>
    # Learned merges actually compress: fewer tokens than bytes.
    assert len(tok(corpus[0])["input_ids"]) < len(corpus[0].encode())
    # RoBERTa pair template and a <mask> that swallows the space before it.
    pair = tok("a b", "c <mask>")["input_ids"]
    assert pair.count(2) == 3 and pair[-2] == 4
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path / "bpe"))
    assert reloaded(corpus[3])["input_ids"] == tok(corpus[3])["input_ids"]


def test_bpe_rejects_tiny_vocab_and_empty_corpus(tmp_path):
    with pytest.raises(ValueError, match="vocab_size: must exceed 261"):
        train_bpe_tokenizer(["x"], vocab_size=100, out_dir=tmp_path)
    with pytest.raises(ValueError, match="too small to learn"):
        train_bpe_tokenizer([], vocab_size=400, out_dir=tmp_path)


def test_minilm_path_is_a_checkpoint_folder():
    names = {p.name for p in minilm_path().iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= names
