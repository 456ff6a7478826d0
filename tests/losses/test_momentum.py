"""Momentum distillation (ALBEF): the EMA step against a hand-computed one, alpha=0 equals the plain
losses, alpha>0 equals a hand-computed mix of hard and soft targets (ITC in float64, captioning), and
a Trainer checkpoint restores the teacher's EMA weights exactly on resume."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hybridformer.losses import (
    CaptionObjective, ContrastiveObjective, FusedMLMObjective, MatchingObjective, MomentumConfig, MomentumTeacher,
    MultiTaskObjective, caption_targets, contrastive_loss, distilled_token_loss, ema_update,
)
from hybridformer.training import Trainer, TrainConfig

sys.path.insert(0, str(Path(__file__).parent))
from multimodal_small import small_batch, small_model  # noqa: E402


def _objective(model, alpha: float | None, momentum: float = 0.9) -> MultiTaskObjective:
    teacher = None if alpha is None else MomentumTeacher(model, MomentumConfig(enabled=True, momentum=momentum, alpha=alpha))
    return MultiTaskObjective({"itc": (ContrastiveObjective(), 1.0), "itm": (MatchingObjective(), 1.0),
                               "caption": (CaptionObjective(), 1.0),
                               "mlm": (FusedMLMObjective(mask_token_id=3, vocab_size=50, special_token_ids=[0, 1, 2]), 1.0)},
                              momentum=teacher)


def test_ema_update_equals_the_hand_computed_average():
    teacher, student = small_model(seed=0), small_model(seed=1)
    student.train()
    student.image_encoder(torch.rand(4, 1, 32, 32))  # BatchNorm running statistics of the student move
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    after_s = student.state_dict()
    ema_update(teacher, student, 0.8)
    floats = 0
    for name, value in teacher.state_dict().items():
        if value.is_floating_point():
            expected = 0.8 * before_t[name].double() + 0.2 * after_s[name].double()
            torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-7, msg=name)
            floats += 1
        else:  # BatchNorm's num_batches_tracked is copied
            assert torch.equal(value, after_s[name]), name
    assert floats > 50
    assert any("running_mean" in k for k in teacher.state_dict())


def test_the_teacher_is_outside_the_model_needs_no_gradient_and_stays_in_eval():
    model = small_model()
    objective = _objective(model, 0.4)
    assert not any("momentum" in n for n, _ in model.named_parameters())
    assert [n for n, p in objective.named_parameters() if p.requires_grad] == ["terms.itc.log_temperature"]
    assert any(k.startswith("momentum.model.") for k in objective.state_dict())
    objective.train()
    assert not objective.momentum.model.training
    with pytest.raises(ValueError, match="momentum.alpha"):
        MomentumConfig(alpha=1.5)


def test_alpha_zero_gives_the_plain_loss():
    model, batch = small_model(), small_batch()
    model.eval()  # no dropout, so the two passes see one function
    torch.manual_seed(3)
    plain = _objective(model, None)(model, batch)
    torch.manual_seed(3)
    distilled = _objective(model, 0.0)(model, batch)
    for key in ("itc_loss", "itm_loss", "caption_loss", "mlm_loss", "loss"):
        assert distilled.metrics[key].item() == pytest.approx(plain.metrics[key].item(), rel=1e-6), key


def test_distilled_contrastive_loss_equals_the_hand_computed_mix():
    g = torch.Generator().manual_seed(0)
    unit = lambda: F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=1)  # noqa: E731
    img, txt, t_img, t_txt = unit(), unit(), unit(), unit()
    temp, alpha = torch.tensor(0.1, dtype=torch.float64), 0.3
    got = contrastive_loss(img, txt, temp, teacher=(t_img, t_txt), alpha=alpha).loss
    eye = torch.eye(5, dtype=torch.float64)
    expected = 0.0
    for s, t in ((img @ txt.T, t_img @ t_txt.T), (txt @ img.T, t_txt @ t_img.T)):
        targets = alpha * torch.softmax(t / temp, 1) + (1 - alpha) * eye
        expected += -(targets * torch.log_softmax(s / temp, 1)).sum(1).mean() / 2
    torch.testing.assert_close(got, expected)
    plain = contrastive_loss(img, txt, temp).loss
    torch.testing.assert_close(contrastive_loss(img, txt, temp, teacher=(t_img, t_txt), alpha=0.0).loss, plain)


def test_distilled_caption_loss_equals_the_hand_computed_mix():
    model, batch = small_model(seed=0), small_batch()
    model.eval()
    teacher = MomentumTeacher(small_model(seed=1), MomentumConfig(enabled=True, alpha=0.25))  # a different teacher
    got = CaptionObjective()(model, batch, teacher=teacher).metrics["caption_loss"].double()
    with torch.no_grad():
        logits = model(batch["input_ids"], batch["attention_mask"], images=batch["images"]).logits.double()
        t_logits = teacher.model(batch["input_ids"], batch["attention_mask"], images=batch["images"]).logits.double()
    targets = caption_targets(batch["input_ids"], batch["attention_mask"])
    terms = []
    for b, n in (targets != -100).nonzero().tolist():
        log_p = torch.log_softmax(logits[b, n], 0)
        hard = -log_p[targets[b, n]]
        soft = -(torch.softmax(t_logits[b, n], 0) * log_p).sum()
        terms.append(0.75 * hard + 0.25 * soft)
    assert got.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="teacher_logits"):
        distilled_token_loss(logits, targets, t_logits[:, :-1], 0.5)


def _rows(n: int = 6) -> list[dict]:
    batch = small_batch(batch=n, seed=1)
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


def _collate(rows: list[dict]) -> dict:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def _fit(out: Path, steps: int, resume_from: Path | None = None) -> MultiTaskObjective:
    model = small_model(seed=0)
    teacher = MomentumTeacher(model, MomentumConfig(enabled=True, momentum=0.5, alpha=0.4))
    objective = MultiTaskObjective({"itc": (ContrastiveObjective(), 1.0), "caption": (CaptionObjective(), 1.0)},
                                   momentum=teacher)
    config = TrainConfig(lr=1e-2, max_steps=steps, batch_size=2, out_dir=str(out), save_every=2, keep_last=5,
                         progress_bar=False, tensorboard=False, warmup_steps=0, log_every=1,
                         resume_from=str(resume_from) if resume_from else None)
    Trainer(model, objective, _rows(), config, _collate).fit()
    objective.student = model  # for the assertions
    return objective


def test_the_objective_state_dict_round_trips_the_teacher():
    trained, fresh = _objective(small_model(seed=0), 0.4), _objective(small_model(seed=0), 0.4)
    ema_update(trained.momentum.model, small_model(seed=1), 0.5)
    fresh.load_state_dict(trained.state_dict())
    for key, value in fresh.momentum.model.state_dict().items():
        assert torch.equal(value, trained.momentum.model.state_dict()[key]), key


@pytest.mark.slow  # two short Trainer runs with checkpoints (~7 s quiet, ~45 s at load 12)
def test_resume_restores_the_teacher_weights(tmp_path):
    full = _fit(tmp_path / "full", 3)
    teacher, student = full.momentum.model.state_dict(), full.student.state_dict()
    name = "decoder.lm_head.weight" if "decoder.lm_head.weight" in teacher else next(k for k, v in teacher.items() if v.dim() == 2)
    assert not torch.equal(teacher[name], student[name])  # the EMA lags the model
    assert not torch.equal(teacher[name], small_model(seed=0).state_dict()[name])  # and it moved
    resumed = _fit(tmp_path / "resumed", 3, resume_from=tmp_path / "full" / "checkpoints" / "step-00000002")
    for key, value in resumed.momentum.model.state_dict().items():
        torch.testing.assert_close(value, teacher[key], rtol=1e-5, atol=1e-6, msg=key)
