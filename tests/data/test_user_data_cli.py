"""Every layout through the CLI: ``pretrain`` / ``finetune`` / ``evaluate`` on files written in that
exact layout, each with one bad file that the error names (exit 1, one line) and ``skip`` counts in
the summary and metrics.json."""

from __future__ import annotations

import json

import pytest

from hybridformer.cli import main
from user_files import class_tree, clips, coco, imagefolder, pair_table, shards, truncated, vqa_jsonl, vqa_v2

STEP = ["--train.max_steps", "1", "--train.batch_size", "4", "--train.progress_bar", "false", "--data.image_size", "16"]


def _imagefolder(tmp):
    root = imagefolder(tmp / "hf", 8)
    truncated(root / "images" / "6.png")
    return str(root), "6.png"


def _csv(tmp):
    path = pair_table(tmp / "t", "csv", 8)
    path.write_text(path.read_text() + "img/missing.png,a photo that is not there\n")
    return str(path), "missing.png"


def _jsonl(tmp):
    path = pair_table(tmp / "j", "jsonl", 8)
    path.write_text(path.read_text() + '{"image": "img/2.png", "caption": ""}\n')
    return str(path), "pairs.jsonl:9"


def _coco(tmp):
    path = coco(tmp / "coco", 6)
    (tmp / "coco" / "val2017" / f"{4:012d}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return str(tmp / "coco"), f"{4:012d}.jpg"


def _webdataset(tmp):
    return shards(tmp / "wds", 2, 4, bad_member=(0, 1)), "000000.tar:000001.png"


@pytest.mark.parametrize("make", [_imagefolder, _csv, _jsonl, _coco, _webdataset])
def test_pretrain_on_each_layout_names_or_skips_its_bad_file(tmp_path, make, capsys):
    path, name = make(tmp_path)
    workers = ["--train.num_workers", "2"] if make is _webdataset else []
    argv = ["pretrain", "--objectives", "itc,caption", "--model", "tiny", "--data.path", path, *STEP, *workers]
    assert main([*argv, "--out-dir", str(tmp_path / "fail")]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # the run's announcements, then the error: one line
    assert name in err[-1] and "on_bad_file skip" in err[-1] and not any("Traceback" in line for line in err), err
    assert main([*argv, "--out-dir", str(tmp_path / "run"), "--data.on_bad_file", "skip"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 bad file(s)" in out and name in out
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["steps"] == 1 and record["bad_files"]["count"] == 1 and name in json.dumps(record["bad_files"])


def test_image_classification_on_a_class_tree_reports_top5_per_class_and_confusion(tmp_path, capsys):
    root = class_tree(tmp_path / "tree", 8)
    truncated(root / "cat" / "broken.png")
    common = ["--data.path", str(root), "--data.image_size", "16", "--data.on_bad_file", "skip"]
    assert main(["finetune", "--task", "image-classification", "--model", "tiny", *common, *STEP[:6],
                 "--out-dir", str(tmp_path / "ft")]) == 0
    record = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert set(record["metrics"]) == {"accuracy", "top5_accuracy", "macro_f1"}
    assert record["metrics"]["top5_accuracy"] == 1.0  # two classes: the true one is always in the top 5
    assert set(record["report"]["per_class"]) == {"cat", "dog"} and (tmp_path / "ft" / "confusion.png").stat().st_size > 0
    assert record["bad_files"]["count"] == 1
    capsys.readouterr()
    assert main(["evaluate", "--task", "image-classification", "--model", str(tmp_path / "ft" / "model"), *common,
                 "--out", str(tmp_path / "ev" / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert "top5_accuracy" in out and "cat" in out and "broken.png" in out
    evaluated = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert evaluated["metrics"] == record["metrics"] and (tmp_path / "ev" / "confusion.png").is_file()


def test_video_classification_on_a_clip_table(tmp_path, capsys):
    table = clips(tmp_path / "k", per_class=4)
    (tmp_path / "k" / "dog" / "bad.avi").write_bytes(b"not a clip")
    table.write_text(table.read_text() + "dog/bad.avi,dog\n")
    argv = ["finetune", "--task", "video-classification", "--model", "tiny", "--data.path", str(table), *STEP]
    assert main([*argv, "--out-dir", str(tmp_path / "fail")]) == 1
    assert "bad.avi" in capsys.readouterr().err
    assert main([*argv, "--out-dir", str(tmp_path / "ft"), "--data.on_bad_file", "skip"]) == 0
    record = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert 0 <= record["metrics"]["accuracy"] <= 1 and record["bad_files"]["files"][0]["path"].endswith("bad.avi")


def test_an_unknown_layout_is_one_line_listing_the_formats(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme.md").write_text("hello")
    assert main(["pretrain", "--model", "tiny", "--data.path", str(tmp_path / "x"), *STEP]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "readme.md" in err[0] and "webdataset" in err[0], err


def test_caption_finetune_and_retrieval_on_coco(tmp_path):
    path = coco(tmp_path / "coco", 10)
    assert main(["finetune", "--task", "caption", "--model", "tiny", "--data.path", str(path), *STEP,
                 "--eval_limit", "4", "--out-dir", str(tmp_path / "cap")]) == 0
    assert 0 <= json.loads((tmp_path / "cap" / "metrics.json").read_text())["metrics"]["bleu4"] <= 1
    assert main(["evaluate", "--task", "retrieval", "--model", str(tmp_path / "cap" / "model"), "--data.path", str(path),
                 "--data.image_size", "16", "--out", str(tmp_path / "r.json")]) == 0
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert 0 <= metrics["r1"] <= metrics["r5"] <= 1


def test_a_named_format_wins_over_detection_and_needs_a_path(tmp_path, capsys):
    assert main(["pretrain", "--model", "tiny", "--data.format", "coco", *STEP]) == 2
    assert "data.format" in capsys.readouterr().err
    path = pair_table(tmp_path / "t", "csv", 8)
    assert main(["pretrain", "--model", "tiny", "--data.path", str(path), "--data.format", "webdataset", *STEP]) == 1
    assert "pairs.csv" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("layout", ["vqa-v2", "jsonl"])
def test_vqa_finetune_on_each_layout_names_or_skips_an_undecodable_image(tmp_path, layout, capsys):
    if layout == "vqa-v2":
        path = vqa_v2(tmp_path / "v2")
        broken = truncated(tmp_path / "v2" / "val2014" / f"COCO_val2014_{3:012d}.jpg")
    else:
        path = vqa_jsonl(tmp_path / "j")
        broken = truncated(tmp_path / "j" / "photos" / "3.png")
    argv = ["finetune", "--task", "vqa", "--model", "tiny", "--data.path", str(path), *STEP]
    assert main([*argv, "--out-dir", str(tmp_path / "fail")]) == 1
    assert broken.name in capsys.readouterr().err.strip().splitlines()[-1]
    assert main([*argv, "--out-dir", str(tmp_path / "ft"), "--data.on_bad_file", "skip"]) == 0
    record = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert 0 <= record["metrics"]["vqa_accuracy"] <= 1 and record["bad_files"]["count"] == 1
    assert record["bad_files"]["files"][0]["path"].endswith(broken.name)
