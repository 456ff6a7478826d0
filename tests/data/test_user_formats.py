"""Readers of the users' layouts: detection, pairs / classes / clips read back as written, and one bad
file per format named by the error or (skip) listed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hybridformer.data import load_image
from hybridformer.data.bad_files import BadFileError, BadFiles
from hybridformer.data.formats import UserDataOptions, detect_format, read_user_data
from hybridformer.data.video_clips import sample_frames
from user_files import CLASSES, class_tree, clips, coco, imagefolder, pair_table, shards, truncated


def _options(policy: str = "error", **kw) -> UserDataOptions:
    return UserDataOptions(bad=BadFiles(policy), image_size=16, **kw)


def _all(splits) -> list:
    return [e for part in (splits.train, splits.validation, splits.test) for e in (part[i] for i in range(len(part)))]


def test_detection_names_each_layout_and_an_unknown_one_lists_the_formats(tmp_path):
    assert detect_format(imagefolder(tmp_path / "hf")) == "imagefolder"
    assert detect_format(class_tree(tmp_path / "tree")) == "imagefolder"
    assert detect_format(pair_table(tmp_path / "t", "csv")) == "csv"
    assert detect_format(pair_table(tmp_path / "j", "jsonl")) == "jsonl"
    assert detect_format(coco(tmp_path / "coco")) == "coco"
    assert detect_format(tmp_path / "coco" / "annotations") == "coco"
    assert detect_format(shards(tmp_path / "wds", 2, 2)) == "webdataset"
    assert detect_format(tmp_path / "wds") == "webdataset"
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    with pytest.raises(BadFileError, match=r"notes\.txt.*imagefolder, csv, jsonl, coco, webdataset, vqa-v2"):
        detect_format(tmp_path / "odd")


@pytest.mark.parametrize("metadata", ["jsonl", "csv"])
def test_imagefolder_pairs_hold_every_file_with_its_caption(tmp_path, metadata):
    root = imagefolder(tmp_path / "hf", 10, metadata)
    examples = _all(read_user_data(root, "pairs", _options()))
    assert sorted(e.caption for e in examples) == sorted(f"picture number {i} of a {CLASSES[i % 2]}" for i in range(10))
    first = next(e for e in examples if e.caption.startswith("picture number 3 "))
    assert torch.equal(first.image, load_image(root / "images" / "3.png", size=16))


def test_coco_keeps_every_caption_and_an_image_in_one_split(tmp_path):
    splits = read_user_data(coco(tmp_path / "coco", 8), "pairs", _options())
    parts = [{e.image_id for e in (p[i] for i in range(len(p)))} for p in (splits.train, splits.validation, splits.test)]
    assert sum(len(p) for p in (splits.train, splits.validation, splits.test)) == 16
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_class_tree_labels_equal_torchvision_imagefolder(tmp_path):
    from torchvision.datasets import ImageFolder

    root = class_tree(tmp_path / "tree")
    splits = read_user_data(root, "classes", _options())
    reference = {path: label for path, label in ImageFolder(str(root)).samples}
    got = {e.image_id: e.label for e in _all(splits)}
    assert got == reference and splits.train.label_names == CLASSES


def test_train_val_trees_are_the_splits(tmp_path):
    class_tree(tmp_path / "t" / "train", 3)
    class_tree(tmp_path / "t" / "val", 2)
    splits = read_user_data(tmp_path / "t", "classes", _options())
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 4, 4)


def test_clips_sample_frames_uniformly(tmp_path):
    table = clips(tmp_path / "k", per_class=3, frames=6)
    splits = read_user_data(table, "clips", UserDataOptions(bad=BadFiles(), image_size=16, num_frames=3))
    example = _all(splits)[0]
    raw = torch.from_numpy(np.load(example.clip_id)).permute(3, 0, 1, 2)  # (C, T, H, W)
    assert example.clip.shape == (3, 3, 16, 16) and torch.equal(example.clip, raw[:, [0, 2, 5]])  # round(0, 2.5, 5)
    assert torch.equal(sample_frames(raw, 2), raw[:, [0, 5]])
    assert splits.train.label_names == CLASSES


# One bad file per format: the error names it; skip counts and lists it.
def _bad_imagefolder(tmp):
    root = imagefolder(tmp / "hf", 8)
    truncated(root / "images" / "5.png")
    return root, "pairs", "5.png", "truncated"


def _bad_csv(tmp):
    path = pair_table(tmp / "t", "csv", 8)
    path.write_text(path.read_text() + "img/missing.png,a photo that is not there\n")
    return path, "pairs", "missing.png", "not found"


def _bad_jsonl(tmp):
    path = pair_table(tmp / "j", "jsonl", 8)
    path.write_text(path.read_text() + json.dumps({"image": "img/1.png"}) + "\n")
    return path, "pairs", "pairs.jsonl:9", "caption"


def _bad_coco(tmp):
    path = coco(tmp / "coco", 6)
    (tmp / "coco" / "val2017" / f"{2:012d}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return path, "pairs", f"{2:012d}.jpg", "image"


def _bad_classes(tmp):
    root = class_tree(tmp / "tree")
    truncated(root / "dog" / "broken.png")
    return root, "classes", "broken.png", "truncated"


def _bad_clip(tmp):
    table = clips(tmp / "k")
    (tmp / "k" / "cat" / "9.mp4").write_bytes(b"not a video at all")
    table.write_text(table.read_text() + "cat/9.mp4,cat\n")
    return table, "clips", "9.mp4", "video"


@pytest.mark.parametrize("make", [_bad_imagefolder, _bad_csv, _bad_jsonl, _bad_coco, _bad_classes, _bad_clip])
def test_one_bad_file_is_named_or_skipped_and_listed(tmp_path, make):
    path, kind, name, what = make(tmp_path)
    with pytest.raises(BadFileError, match=name) as err:
        read_user_data(path, kind, _options("error"))
    assert what in str(err.value) and "--data.on_bad_file skip" in str(err.value)
    bad = BadFiles("skip")
    splits = read_user_data(path, kind, UserDataOptions(bad=bad, image_size=16))
    summary = bad.summary()
    assert summary["count"] == 1 and name in summary["files"][0]["path"] + summary["files"][0]["reason"]
    assert all(name not in str(getattr(e, "image_id", getattr(e, "clip_id", ""))) for e in _all(splits))


def test_a_format_that_does_not_hold_the_kind_says_which_do(tmp_path):
    with pytest.raises(BadFileError, match="for classes use one of imagefolder"):
        read_user_data(coco(tmp_path / "c"), "classes", _options())
