"""The real embedded text sets: counts, labels, fixed disjoint splits, the constructed pair task."""

from __future__ import annotations

import pytest

from hybridformer.data import (
    BBC_LABELS,
    PAIR_LABELS,
    bbc_splits,
    bbc_topic_pair_splits,
    load_bbc,
    load_builtin,
    load_sentiment,
    sentiment_splits,
)

PARTS = ("train", "validation", "test")


def test_sentiment_counts_and_labels():
    ds = load_sentiment()
    assert len(ds) == 12_752
    assert ds.label_counts() == {"rotten": 5_384, "fresh": 7_368}
    assert len(set(ds.texts)) == len(ds) and all(t.strip() == t and t for t in ds.texts)
    assert (ds.texts[0], ds.label_names[ds.labels[0]]) == ("A three-hour cinema master class.", "fresh")


def test_bbc_counts_and_text():
    ds = load_bbc()
    assert len(ds) == 2_225 and ds.label_names == BBC_LABELS
    assert ds.label_counts() == {"business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
    assert ds.ids[0] == "business/001.txt" and ds.texts[0].startswith("Ad sales boost Time Warner profit")
    cp1252 = ds.texts[ds.ids.index("sports/199.txt")]  # the one file that is not UTF-8
    assert "£" in cp1252 and "\ufffd" not in cp1252


@pytest.mark.parametrize(
    "name, sizes",
    [("sentiment", (10_201, 1_275, 1_276)), ("bbc", (1_786, 223, 216)), ("bbc-pairs", (1_786, 223, 216))],
)
def test_documented_split_sizes(name, sizes):
    splits = load_builtin(name)
    assert tuple(len(splits[p]) for p in PARTS) == sizes


@pytest.mark.parametrize("make", [sentiment_splits, bbc_splits])
def test_splits_are_deterministic_disjoint_complete_and_stratified(make):
    a, b = make(), make()
    for part in PARTS:
        assert a[part].texts == b[part].texts and a[part].labels == b[part].labels
    full = load_sentiment() if make is sentiment_splits else load_bbc()
    texts = {p: set(a[p].texts) for p in PARTS}
    assert not texts["train"] & texts["validation"] and not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]  # duplicates never straddle splits
    assert sum(len(a[p]) for p in PARTS) == len(full)
    assert sorted(t for p in PARTS for t in a[p].texts) == sorted(full.texts)
    for name, n in full.label_counts().items():
        share = a.test.label_counts()[name] / len(a.test)
        assert share == pytest.approx(n / len(full), abs=0.03)
    other = make(seed=1)
    assert other.test.texts != a.test.texts


def test_bbc_topic_pairs_are_labelled_by_topic_and_stay_in_their_split():
    pairs = bbc_topic_pair_splits()
    articles = bbc_splits()
    topic = {i: articles[p].labels[k] for p in PARTS for k, i in enumerate(articles[p].ids)}
    for part in PARTS:
        ds = pairs[part]
        assert ds.label_names == PAIR_LABELS and ds.is_pair
        counts = ds.label_counts()
        assert abs(counts["same topic"] - counts["different topic"]) <= 1
        own = set(articles[part].ids)
        for pair_id, y in zip(ds.ids, ds.labels):
            left, right = pair_id.split("|")
            assert left in own and right in own and left != right
            assert y == int(topic[left] == topic[right])
    example = pairs.train[0]
    assert example.text_pair and len(example.text.split()) > 5  # lead paragraphs, not headlines


def test_unknown_builtin_name():
    with pytest.raises(ValueError, match="unknown built-in dataset 'imdb'"):
        load_builtin("imdb")
