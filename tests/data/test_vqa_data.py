"""VQA sets generated from real labels, written in the VQA-v2 layout, read back by the official-layout reader."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hybridformer.data.image_text import mnist_image_text_splits
from hybridformer.data.vqa import answer_vocabulary, coco_image_lookup, read_vqa, write_vqa
from hybridformer.data.images import load_image
from hybridformer.data.sources import package_file
from hybridformer.data.vqa_generate import EASY_VQA, _easy_records, _easy_vqa_part, easy_vqa_splits, generate_vqa, vqa_splits
from hybridformer.evaluation import vqa_accuracy

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _check_answer(question: str, answer: str, label: int) -> None:
    """An independent reading of each template: what the answer must be for a digit of class ``label``."""
    if question == "what digit is this?":
        assert answer == str(label)
    elif question == "is this digit even?":
        assert answer == ("yes" if label % 2 == 0 else "no")
    elif question.startswith("is this number greater than "):
        k = int(question.rstrip("?").split()[-1])
        assert answer == ("yes" if label > k else "no")
    else:
        asked = WORDS.index(question.removeprefix("is this a ").rstrip("?"))
        assert answer == ("yes" if asked == label else "no")


def test_generated_files_follow_the_vqa_v2_layout_and_answers_follow_the_labels(tmp_path):
    images = mnist_image_text_splits().test
    questions, annotations = generate_vqa(images, "mnist5k", seed=0)
    q_path, a_path = write_vqa(tmp_path, "test", questions, annotations)
    q_body, a_body = json.loads(q_path.read_text()), json.loads(a_path.read_text())
    assert {"info", "task_type", "data_type", "data_subtype", "license", "questions"} <= set(q_body)
    assert set(q_body["questions"][0]) == {"image_id", "question", "question_id"}
    ann = a_body["annotations"][0]
    assert {"question_id", "image_id", "answers", "multiple_choice_answer", "answer_type", "question_type"} <= set(ann)
    assert [a["answer_id"] for a in ann["answers"]] == list(range(1, 11))
    assert set(ann["answers"][0]) == {"answer", "answer_confidence", "answer_id"}

    dataset = read_vqa(q_path, a_path, lambda i: images.images[i])
    assert len(dataset) == 4 * len(images) == 2000
    assert len({q["question_id"] for q in dataset.questions}) == 2000
    yes = 0
    for i in range(0, 2000, 3):
        example = dataset[i]
        _check_answer(example.question, example.multiple_choice_answer, images.labels[example.image_id])
        assert example.answers == (example.multiple_choice_answer,) * 10
        assert torch.equal(example.image, images[example.image_id].image)
        yes += example.multiple_choice_answer == "yes"
    kinds = {dataset[i].question.split(" ")[2] for i in range(40)}
    assert len(kinds) >= 3
    # a perfect answerer scores 1; "yes" to everything scores exactly the share of "yes" answers
    refs = dataset.reference_answers()
    truth = {q: a["multiple_choice_answer"] for q, a in dataset.annotations.items()}
    assert vqa_accuracy(truth, refs).overall == 1.0
    share_yes = sum(a == "yes" for a in truth.values()) / len(truth)
    assert vqa_accuracy({q: "yes" for q in refs}, refs).overall == pytest.approx(share_yes)
    assert 0.3 < share_yes < 0.5  # 3 of 4 questions are yes/no, about half of them true
    assert set(answer_vocabulary(dataset)[:2]) == {"no", "yes"} and len(answer_vocabulary(dataset)) == 12


def test_vqa_splits_keep_the_image_splits_and_reuse_their_files(tmp_path):
    splits = vqa_splits("mnist5k", seed=0, out_dir=tmp_path)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [16000, 2000, 2000]
    test_images = mnist_image_text_splits().test
    assert torch.equal(splits.test[5].image, test_images[splits.test[5].image_id].image)
    stamp = (tmp_path / "train_questions.json").stat().st_mtime_ns
    again = vqa_splits("mnist5k", seed=0, out_dir=tmp_path)
    assert (tmp_path / "train_questions.json").stat().st_mtime_ns == stamp  # read, not rewritten
    assert again.test.questions == splits.test.questions


def test_a_real_vqa_v2_folder_loads(tmp_path):
    """A VQA-v2 pair written by hand in the official layout, with a COCO image folder."""
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "COCO_val2014_000000000042.png", format="PNG")
    (tmp_path / "COCO_val2014_000000000042.jpg").write_bytes((tmp_path / "COCO_val2014_000000000042.png").read_bytes())
    answers = ["2"] * 6 + ["two"] * 3 + ["3"]
    questions = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
                 "license": {}, "questions": [{"image_id": 42, "question": "How many dogs?", "question_id": 420}]}
    annotations = {"info": {}, "data_type": "mscoco", "data_subtype": "val2014", "license": {}, "annotations": [
        {"question_id": 420, "image_id": 42, "question_type": "how many", "answer_type": "number",
         "multiple_choice_answer": "2",
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j, a in enumerate(answers)]}]}
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "a.json").write_text(json.dumps(annotations))
    dataset = read_vqa(tmp_path / "q.json", tmp_path / "a.json", coco_image_lookup(tmp_path, "val2014"))
    example = dataset[0]
    assert example.question == "How many dogs?" and example.answers == tuple(answers)
    assert torch.equal(example.image, torch.from_numpy(pixels).permute(2, 0, 1))
    # "two" normalises to "2" here (the references differ): 9 of 10 agree -> 1.0; "3": 1 of 10 -> 0.3
    assert vqa_accuracy({420: "two"}, dataset.reference_answers()).overall == 1.0
    assert vqa_accuracy({420: "3"}, dataset.reference_answers()).overall == pytest.approx(0.3)


def test_bad_vqa_files_name_the_file(tmp_path):
    lookup = lambda i: torch.zeros(1, 2, 2, dtype=torch.uint8)  # noqa: E731
    (tmp_path / "q.json").write_text(json.dumps({"questions": [{"image_id": 1, "question": "?", "question_id": 9}]}))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        read_vqa(tmp_path / "q.json", tmp_path / "bad.json", lookup)
    (tmp_path / "a.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match=r"a\.json: no annotation for 1 question"):
        read_vqa(tmp_path / "q.json", tmp_path / "a.json", lookup)
    (tmp_path / "flat.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match=r"flat\.json: expected a JSON object with a 'questions' list"):
        read_vqa(tmp_path / "flat.json", tmp_path / "a.json", lookup)
    with pytest.raises(ValueError, match=r"absent\.json: VQA file not found"):
        read_vqa(tmp_path / "absent.json", tmp_path / "a.json", lookup)


needs_easy_vqa = pytest.mark.skipif(
    importlib.util.find_spec("easy_vqa") is None, reason="easy-vqa not installed: pip install --no-deps easy-vqa==1.0"
)


@needs_easy_vqa
def test_easy_vqa_questions_convert_to_the_layout(tmp_path):
    root = package_file(EASY_VQA, "data")
    rows, paths = _easy_vqa_part(root, "test")
    q_path, a_path = write_vqa(tmp_path, "easy", *_easy_records(rows[:60], offset=1))
    dataset = read_vqa(q_path, a_path, lambda i: load_image(paths[i]))
    raw = json.loads((root / "test" / "questions.json").read_text())[:60]  # [[question, answer, image_id]]
    for i in (0, 17, 59):
        example = dataset[i]
        assert (example.question, example.multiple_choice_answer, example.image_id) == tuple(raw[i])
        assert example.answer_type == ("yes/no" if raw[i][1] in ("yes", "no") else "other")
        assert example.image.shape == (3, 64, 64)


@pytest.mark.slow
@needs_easy_vqa
def test_easy_vqa_is_converted_to_the_same_layout(tmp_path):
    splits = easy_vqa_splits(out_dir=tmp_path)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [34769, 3806, 9673]  # 38,575 train questions
    assert not {q["image_id"] for q in splits.train.questions} & {q["image_id"] for q in splits.validation.questions}
    example = splits.test[0]
    assert example.image.shape == (3, 64, 64) and len(example.answers) == 10
    assert len(answer_vocabulary(splits.train)) == 13
