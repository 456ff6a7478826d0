"""The user's own CSV/TSV/JSONL files: loading, label mapping and every error path."""

from __future__ import annotations

import json

import pytest

from hybridformer.data import DataFileError, load_text_file


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_quotes_bom_and_inferred_labels(tmp_path):
    f = _write(tmp_path / "train.csv", '\ufeffreview,stars\n"Great, really",5\nMeh,1\n"Fine\nreally",3\n')
    ds = load_text_file(f, text_column="review", label_column="stars")
    assert ds.texts == ["Great, really", "Meh", "Fine\nreally"]
    assert ds.label_names == ["1", "3", "5"] and ds.labels == [2, 0, 1]
    assert ds.name == "train" and not ds.is_pair


def test_jsonl_pairs_and_labels_held_to_training_names(tmp_path):
    rows = [{"a": "x one", "b": "y one", "y": 1}, {"a": "x two", "b": "y two", "y": 0}]
    f = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = load_text_file(f, text_column="a", text_pair_column="b", label_column="y")
    assert ds.text_pairs == ["y one", "y two"] and ds.label_names == ["0", "1"] and ds.labels == [1, 0]
    test = load_text_file(f, text_column="a", text_pair_column="b", label_column="y", label_names=["1", "0"])
    assert test.labels == [0, 1]  # training's class order wins


def test_tsv_and_numeric_label_order(tmp_path):
    f = _write(tmp_path / "d.tsv", "text\tlabel\na\t10\nb\t9\nc\t-1\n")
    assert load_text_file(f).label_names == ["-1", "9", "10"]


def test_missing_column_names_it_and_lists_available(tmp_path):
    f = _write(tmp_path / "d.csv", "sentence,label\nhi,0\n")
    with pytest.raises(DataFileError, match=r"text_column: column 'text' not found .*available: sentence, label"):
        load_text_file(f)
    j = _write(tmp_path / "d.jsonl", '{"text": "hi"}\n')
    with pytest.raises(DataFileError, match=r"label_column: key on line 1 'label' not found .*available: text"):
        load_text_file(j)


def test_unknown_labels_at_test_time_are_named(tmp_path):
    f = _write(tmp_path / "test.csv", "text,label\na,pos\nb,neutral\nc,mixed\n")
    expected = r"2 label\(s\) not seen in training: 'mixed', 'neutral'; known labels: 'neg', 'pos'"
    with pytest.raises(DataFileError, match=expected):
        load_text_file(f, label_names=["neg", "pos"])


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "text,label\n", "has no examples"),
        ("empty.jsonl", "\n\n", "has no examples"),
        ("blank.csv", "text,label\n   ,1\n", r"line 2: empty value in text column 'text'"),
        ("bad.jsonl", '{"text": "a", "label": 1}\n{oops\n', r"line 2: invalid JSON"),
        ("list.jsonl", "[1, 2]\n", "expected a JSON object"),
        ("data.txt", "text,label\n", "cannot tell the format"),
    ],
)
def test_malformed_files(tmp_path, name, content, message):
    with pytest.raises(DataFileError, match=message):
        load_text_file(_write(tmp_path / name, content))


def test_bad_path_and_encoding(tmp_path):
    with pytest.raises(DataFileError, match="path: no such file"):
        load_text_file(tmp_path / "nope.csv")
    with pytest.raises(DataFileError, match="it is a directory"):
        load_text_file(tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not valid UTF-8"):
        load_text_file(latin)
    assert issubclass(DataFileError, ValueError)
