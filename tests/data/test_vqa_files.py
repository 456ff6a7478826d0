"""The user's VQA files: a VQA-v2 folder as its download unpacks, and the JSON-lines layout; bad files named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hybridformer.data.vqa_files import read_vqa_jsonl, read_vqa_v2
from hybridformer.evaluation import vqa_accuracy


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")  # PIL reads by content, whatever the suffix
    return torch.from_numpy(pixels).permute(2, 0, 1)


def _vqa_v2(folder, image_ids=(42, 7)):
    answers = [["2"] * 6 + ["two"] * 3 + ["3"], ["yes"] * 10]
    questions = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014", "license": {},
                 "questions": [{"image_id": i, "question": f"q{i}?", "question_id": 10 * i} for i in image_ids]}
    annotations = {"info": {}, "data_type": "mscoco", "data_subtype": "val2014", "license": {}, "annotations": [
        {"question_id": 10 * i, "image_id": i, "question_type": "how many", "answer_type": "number",
         "multiple_choice_answer": a[0], "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": j + 1}
                                                     for j, x in enumerate(a)]} for i, a in zip(image_ids, answers)]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(questions))
    (folder / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(annotations))


def test_a_vqa_v2_download_reads_from_its_folder_or_questions_file(tmp_path):
    _vqa_v2(tmp_path)
    pixels = _image(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg", 0)
    _image(tmp_path / "val2014" / "COCO_val2014_000000000007.jpg", 1)
    for source in (tmp_path, tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"):
        dataset = read_vqa_v2(source)
        assert len(dataset) == 2
        first = dataset[0]
        assert (first.question, first.question_id, first.answer_type) == ("q42?", 420, "number")
        assert len(first.answers) == 10 and torch.equal(first.image, pixels)
    # 9 of 10 say 2 (as "2" or "two", which normalise alike when the references differ): 1.0
    assert vqa_accuracy({420: "two", 70: "yes"}, dataset.reference_answers()).overall == 1.0
    assert read_vqa_v2(tmp_path, size=8)[1].image.shape == (3, 8, 8)


def test_a_missing_coco_image_is_named(tmp_path):
    _vqa_v2(tmp_path)
    _image(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg", 0)
    with pytest.raises(ValueError, match=r"COCO_val2014_000000000007\.jpg: image of question 70"):
        read_vqa_v2(tmp_path)
    (tmp_path / "v2_more_questions.json").write_text("{}")
    with pytest.raises(ValueError, match="expected one VQA-v2 questions file"):
        read_vqa_v2(tmp_path)


def test_jsonl_questions_with_answers_and_images(tmp_path):
    pixels = _image(tmp_path / "photos" / "a.jpg", 3)
    _image(tmp_path / "photos" / "b.jpg", 4)
    rows = [{"image": "photos/a.jpg", "question": "what colour?", "answers": ["red", "blue", "red"]},
            {"image": "photos/b.jpg", "question": "how many?", "answers": "2", "answer_type": "number"},
            {"image": "photos/a.jpg", "question": "is it round?", "answers": ["yes", "no"]}]
    (tmp_path / "vqa.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    dataset = read_vqa_jsonl(tmp_path / "vqa.jsonl")
    assert len(dataset) == 3
    a, b, c = dataset[0], dataset[1], dataset[2]
    assert (a.multiple_choice_answer, a.answers, a.image_id, a.question_id) == ("red", ("red", "blue", "red"), 0, 0)
    assert (b.multiple_choice_answer, b.answer_type, b.image_id) == ("2", "number", 1)
    assert c.image_id == 0 and c.multiple_choice_answer == "yes"  # a tie: the first given
    assert torch.equal(a.image, pixels)
    # three references: "red" said by 2 -> leave-one-out over 3 subsets: (1/3 + 1/3 + 2/3) / 3
    assert vqa_accuracy({0: "red", 1: "2", 2: "no"}, dataset.reference_answers()).per_question[0] == pytest.approx(4 / 9)


@pytest.mark.parametrize("line, needle", [
    ('{"image": "x.jpg", "question": "q?", "answers": ["a"]}', r"line 1: image file .*x\.jpg not found"),
    ('{"image": "a.jpg", "answers": ["a"]}', r"line 1: needs a non-empty 'question'"),
    ('{"image": "a.jpg", "question": "q?", "answers": []}', r"line 1: 'answers' must be a non-empty list"),
    ('{"image": "a.jpg", "question": "q?"', r"line 1: invalid JSON"),
])
def test_bad_jsonl_lines_are_named(tmp_path, line, needle):
    _image(tmp_path / "a.jpg", 0)
    (tmp_path / "bad.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=needle):
        read_vqa_jsonl(tmp_path / "bad.jsonl")
