"""Writers of small files in the users' layouts, shared by the data and CLI tests."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["cat", "dog"]


def png(path: Path, seed: int, size: int = 12) -> Path:
    """A small random-colour PNG (class 'dog' images are brighter, so a head can learn something)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def png_bytes(seed: int, size: int = 12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def truncated(path: Path) -> Path:
    """A PNG cut in half: its header reads, its pixels do not."""
    data = png_bytes(99, 32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def imagefolder(root: Path, n: int = 10, metadata: str = "jsonl") -> Path:
    """HF imagefolder: images + metadata.jsonl|csv (file_name, text)."""
    rows = [{"file_name": f"images/{i}.png", "text": f"picture number {i} of a {CLASSES[i % 2]}"} for i in range(n)]
    for i in range(n):
        png(root / "images" / f"{i}.png", i)
    if metadata == "jsonl":
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with (root / "metadata.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, ["file_name", "text"])
            w.writeheader()
            w.writerows(rows)
    return root


def pair_table(root: Path, suffix: str, n: int = 10) -> Path:
    """A CSV / JSONL of image paths (relative) and captions."""
    rows = [{"image": f"img/{i}.png", "caption": f"a photo number {i}"} for i in range(n)]
    for i in range(n):
        png(root / "img" / f"{i}.png", 100 + i)
    path = root / f"pairs.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, ["image", "caption"])
            w.writeheader()
            w.writerows(rows)
    return path


def coco(root: Path, n: int = 8) -> Path:
    """COCO captions: annotations/captions_val2017.json + val2017/ (two captions per image)."""
    images = [{"id": 100 + i, "file_name": f"{i:012d}.jpg", "width": 12, "height": 12} for i in range(n)]
    anns = [{"id": k, "image_id": 100 + k // 2, "caption": f"caption {k % 2} of image {k // 2}"} for k in range(2 * n)]
    for i in range(n):
        (root / "val2017").mkdir(parents=True, exist_ok=True)
        Image.open(io.BytesIO(png_bytes(200 + i))).convert("RGB").save(root / "val2017" / f"{i:012d}.jpg")
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations" / "captions_val2017.json"
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": anns}))
    return path


def shards(root: Path, n_shards: int = 4, per_shard: int = 6, bad_member: tuple[int, int] | None = None) -> str:
    """WebDataset shards root/{000000..}.tar of <key>.png + <key>.txt; ``bad_member`` (shard, index)
    holds garbage instead of a PNG. Returns the brace pattern."""
    root.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        with tarfile.open(root / f"{s:06d}.tar", "w") as tar:
            for i in range(per_shard):
                key = f"{s:03d}{i:03d}"
                image = b"this is not an image" if bad_member == (s, i) else png_bytes(1000 * s + i)
                for ext, data in (("png", image), ("txt", f"sample {key} of shard {s}".encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(root / f"{{000000..{n_shards - 1:06d}}}.tar")


def class_tree(root: Path, per_class: int = 6) -> Path:
    """torchvision ImageFolder: root/<class>/<i>.png."""
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            png(root / name / f"{i}.png", 300 + 10 * c + i)
    return root


def clips(root: Path, per_class: int = 4, frames: int = 6) -> Path:
    """A Kinetics-style folder: clips as .npy (T, H, W, 3) + labels.csv (path,label)."""
    rows = []
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            rng = np.random.default_rng(400 + 10 * c + i)
            file = root / name / f"{i}.npy"
            file.parent.mkdir(parents=True, exist_ok=True)
            np.save(file, rng.integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8))
            rows.append(f"{name}/{i}.npy,{name}")
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


def vqa_v2(root: Path, n_images: int = 6) -> Path:
    """A VQA-v2 split as its download unpacks: questions + annotations JSON and val2014/COCO_val2014_<id>.jpg."""
    questions, annotations = [], []
    for i in range(n_images):
        (root / "val2014").mkdir(parents=True, exist_ok=True)
        Image.open(io.BytesIO(png_bytes(500 + i))).convert("RGB").save(root / "val2014" / f"COCO_val2014_{i:012d}.jpg")
        for k, (question, answer) in enumerate((("is it a cat?", CLASSES[i % 2] == "cat" and "yes" or "no"),
                                                ("what animal is it?", CLASSES[i % 2]))):
            qid = 10 * i + k
            questions.append({"image_id": i, "question": question, "question_id": qid})
            annotations.append({"question_id": qid, "image_id": i, "question_type": "what", "answer_type": "other",
                                "multiple_choice_answer": answer,
                                "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": j + 1} for j in range(10)]})
    head = {"info": {}, "license": {}, "data_type": "mscoco", "data_subtype": "val2014"}
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({**head, "task_type": "Open-Ended", "questions": questions}))
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({**head, "annotations": annotations}))
    return root


def vqa_jsonl(root: Path, n_images: int = 6) -> Path:
    """A VQA JSON-lines file: image, question, answers per line."""
    lines = []
    for i in range(n_images):
        png(root / "photos" / f"{i}.png", 600 + i)
        lines.append(json.dumps({"image": f"photos/{i}.png", "question": "what animal is it?", "answers": [CLASSES[i % 2]] * 3}))
    (root / "vqa.jsonl").write_text("\n".join(lines) + "\n")
    return root / "vqa.jsonl"
