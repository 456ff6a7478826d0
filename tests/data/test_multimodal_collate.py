"""Image-text / VQA / video collators with the bundled MiniLM tokenizer, on the real embedded data."""

from __future__ import annotations

import pytest
import torch

from hybridformer.data import minilm_tokenizer
from hybridformer.data.image_text import mnist_image_text_splits
from hybridformer.data.multimodal_collate import ImageTextCollator, PixelSpec, VideoTextCollator, VQACollator
from hybridformer.data.moving_mnist import MovingDigits
from hybridformer.data.vqa import VQAExample
from hybridformer.evaluation import vqa_question_accuracy


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def digits():
    return mnist_image_text_splits().test


def test_image_text_batch(tokenizer, digits):
    examples = [digits[i] for i in range(4)]
    batch = ImageTextCollator(tokenizer)(examples)
    assert batch["images"].shape == (4, 1, 28, 28) and batch["images"].dtype == torch.float32
    assert torch.equal(batch["images"][2], examples[2].image.float() / 255)
    assert batch["labels"].tolist() == [e.label for e in examples]
    assert tokenizer.decode(batch["input_ids"][1], skip_special_tokens=True) == examples[1].caption.lower()
    assert batch["attention_mask"].shape == batch["input_ids"].shape
    spec = PixelSpec(image_size=56, channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    big = ImageTextCollator(tokenizer, pixels=spec)(examples)["images"]
    assert big.shape == (4, 3, 56, 56)
    assert torch.equal(big[:, 0], big[:, 2])  # grey repeated to RGB
    # bilinear x2 upsampling of a constant region keeps its value: the black corner maps to (0-0.5)/0.25
    assert torch.allclose(big[:, :, :4, :4], torch.tensor(-2.0))


def test_video_batch(tokenizer, digits):
    clips = MovingDigits(digits, num_frames=4, canvas=32)
    batch = VideoTextCollator(tokenizer, pixels=PixelSpec(image_size=16))([clips[0], clips[1]])
    assert batch["videos"].shape == (2, 1, 4, 16, 16)
    assert batch["directions"].tolist() == [clips[0].direction, clips[1].direction]
    frame = torch.nn.functional.interpolate(clips[1].clip[:, 2:3].float() / 255, size=(16, 16), mode="bilinear",
                                            align_corners=False, antialias=True)  # fmt: skip
    torch.testing.assert_close(batch["videos"][1, :, 2], frame[:, 0])


def test_vqa_batch_targets(tokenizer, digits):
    image = digits[0].image
    examples = [
        VQAExample(image, "what digit is this?", ("7",) * 10, "7", "number", 1, 0),
        VQAExample(image, "what colour?", ("red",) * 2 + ("blue",) * 8, "blue", "other", 2, 0),
        VQAExample(image, "is it?", ("maybe",) * 10, "maybe", "yes/no", 3, 0),
    ]
    vocab = ["yes", "no", "7", "blue", "red"]
    batch = VQACollator(tokenizer, vocab)(examples)
    assert batch["answer_labels"].tolist() == [2, 3, -100]  # "maybe" is not in the vocabulary
    assert batch["answer_scores"][0].tolist() == [0, 0, 1, 0, 0]
    assert batch["answer_scores"][1, 4].item() == pytest.approx(0.6)  # 2 of 10 said red
    assert batch["answer_scores"][1, 3].item() == pytest.approx(vqa_question_accuracy("blue", examples[1].answers))
    assert batch["answer_scores"][2].sum() == 0
    assert tokenizer.decode(batch["answer_ids"][1], skip_special_tokens=True) == "blue"
    assert batch["question_ids"].tolist() == [1, 2, 3] and batch["images"].shape == (3, 1, 28, 28)


def test_bad_batches_name_the_problem(tokenizer, digits):
    with pytest.raises(ValueError, match="examples: cannot collate an empty batch"):
        ImageTextCollator(tokenizer)([])
    mixed = [digits[0], digits[1]]
    object.__setattr__(mixed[1], "image", torch.zeros(3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="examples: the images differ in shape .* set image_size/channels"):
        ImageTextCollator(tokenizer)(mixed)
    assert ImageTextCollator(tokenizer, pixels=PixelSpec(channels=1))(mixed)["images"].shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="channels: must be 1, 3 or None"):
        PixelSpec(channels=4)
    with pytest.raises(ValueError, match="mean, std: give both"):
        PixelSpec(mean=(0.5,))
    with pytest.raises(ValueError, match="answer_vocab"):
        VQACollator(tokenizer, [])
