"""Distilling the multimodal model (recipes/distill_multimodal.py): the student's start, the loss by
hand, and the command on the bundled MNIST image-caption pairs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hybridformer.cli import main
from hybridformer.config import ConfigError
from hybridformer.data import minilm_tokenizer
from hybridformer.recipes.distill_multimodal import multimodal_student
from hybridformer.losses import CaptionDistillationObjective
from hybridformer.models import MultimodalModel
from hybridformer.models.multimodal_flavors import build_initialised, tiny_config
from hybridformer.registry import save_model


@pytest.fixture(scope="module")
def teacher() -> MultimodalModel:
    """A tiny-flavor model with 4 text-encoder and 4 decoder blocks (random weights)."""
    config = tiny_config(video=False)
    config = dataclasses.replace(config, text=dataclasses.replace(config.text, n_layers=4),
                                 decoder=dataclasses.replace(config.decoder, n_layers=4))
    torch.manual_seed(0)
    return build_initialised(config).eval()


def test_student_starts_from_every_other_block_of_both_stacks(teacher):
    student = multimodal_student(teacher)
    assert (student.config.text.n_layers, student.config.decoder.n_layers) == (2, 2)
    want = teacher.state_dict()
    for key, value in student.state_dict().items():
        source = key
        for part in ("text_encoder", "decoder"):
            if key.startswith(f"{part}.blocks."):
                new = int(key.split(".")[2])
                source = f"{part}.blocks.{2 * new}." + key.split(".", 3)[3]  # 0 -> 0, 1 -> 2
        assert torch.equal(value, want[source]), key
    picked = multimodal_student(teacher, text_layers=[3], decoder_layers=[1, 3])
    assert torch.equal(picked.text_encoder.blocks[0].ffn.fc_in.weight, teacher.text_encoder.blocks[3].ffn.fc_in.weight)
    assert len(picked.decoder.blocks) == 2
    with pytest.raises(ConfigError, match=r"student.decoder_layers: distinct teacher blocks in \[0, 4\)"):
        multimodal_student(teacher, decoder_layers=[1, 1])


def test_caption_distillation_loss_equals_the_hand_computed_value(teacher):
    student = multimodal_student(teacher)
    torch.manual_seed(1)
    with torch.no_grad():  # a student that differs from its teacher's blocks
        for p in student.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(1000, 5000, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    images = torch.rand(3, 3, 32, 32)
    batch = {"input_ids": ids, "attention_mask": mask, "images": images}
    objective = CaptionDistillationObjective(teacher, temperature=2.0, label_weight=0.3)
    student.eval()  # no dropout, so the reference below sees the same logits
    got = objective(student, batch)
    with torch.no_grad():
        s = student(ids, mask, images=images).logits.double()
        t = teacher(ids, mask, images=images).logits.double()
    kl, ce, count = 0.0, 0.0, 0
    for b in range(3):
        for n in range(8):  # position n predicts token n + 1, where that token is real
            if mask[b, n + 1]:
                p_t = F.softmax(t[b, n] / 2, -1)
                kl += float((p_t * (p_t.log() - F.log_softmax(s[b, n] / 2, -1))).sum()) * 4
                ce += float(-F.log_softmax(s[b, n], -1)[ids[b, n + 1]])
                count += 1
    want = 0.7 * kl / count + 0.3 * ce / count
    aux = float(student(ids, mask, images=images).aux_loss)
    assert float(got.loss.detach()) == pytest.approx(want + aux, rel=1e-5)
    assert float(got.metrics["distillation"]) == pytest.approx(kl / count, rel=1e-5)
    assert set(student.state_dict()) == set(multimodal_student(teacher).state_dict())  # teacher not a submodule


def test_distill_command_on_mnist_captions(teacher, tmp_path: Path, capsys):
    save_model(teacher, tmp_path / "teacher", tokenizer=minilm_tokenizer())
    code = main(["distill", "--teacher", str(tmp_path / "teacher"), "--data.task", "mnist5k",
                 "--train.max_steps", "3", "--train.batch_size", "8", "--train.progress_bar", "false",
                 "--train.tensorboard", "false", "--eval_examples", "32", "--out-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "student held-out caption loss" in out and "(32 pairs); teacher" in out
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["student_blocks"] == {"text_encoder": 2, "decoder": 2} and record["train"]["steps"] == 3
    assert 0 <= record["student"]["caption_accuracy"] <= 1 and record["student"]["caption_loss"] > 0
    student = MultimodalModel.from_pretrained(tmp_path / "run" / "model")
    assert len(student.decoder.blocks) == 2 and len(student.text_encoder.blocks) == 2
    assert main(["distill", "--teacher", str(tmp_path / "teacher"), "--label_weight", "2",
                 "--out-dir", str(tmp_path / "bad")]) == 2
    assert "label_weight" in capsys.readouterr().err
