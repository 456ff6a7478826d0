"""Distillation into gated FFNs (in place or from a teacher): the step loss against the passes computed separately."""

import pytest
import torch
import torch.nn.functional as F

from hybridformer.config import ConfigError
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.models import TextClassifier
from hybridformer.losses import GateDistillConfig, GateDistillObjective
from hybridformer.recipes import FinetuneConfig, ModelConfig
from hybridformer.sparsity import SparsityConfig, full_width
from hybridformer.training import Callback, Trainer, TrainConfig


def _examples(n: int = 24) -> list[dict]:
    g = torch.Generator().manual_seed(2)
    return [{"input_ids": torch.randint(1, 50, (int(torch.randint(4, 16, (1,), generator=g)),), generator=g),
             "label": i % 3} for i in range(n)]


def _collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros(len(examples), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(examples):
        ids[i, : len(e["input_ids"])], mask[i, : len(e["input_ids"])] = e["input_ids"], 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([e["label"] for e in examples])}


def _classifier(gates: bool = True, n_layers: int = 2) -> TextClassifier:
    torch.manual_seed(0)
    config = TextEncoderConfig(
        vocab_size=50, d_model=32, n_layers=n_layers, n_heads=2, d_ff=64, max_positions=16, dropout=0.0,
        sparsity=SparsityConfig(enabled=gates, n_groups=8, target_active=0.5),
    )
    return TextClassifier(TextEncoder(config), 3).train()


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(4, 16, dtype=torch.long)
    mask[1, 10:] = 0
    return {"input_ids": torch.randint(1, 50, (4, 16), generator=g), "attention_mask": mask,
            "labels": torch.tensor([0, 2, 1, 2])}


def _kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    p = torch.softmax(teacher.double() / t, -1)
    return t * t * (p * (p.log() - torch.log_softmax(student.double() / t, -1))).sum(-1).mean()


@pytest.mark.parametrize("label_weight,temperature", [(0.0, 1.0), (0.3, 2.0)])
def test_loss_is_full_width_ce_plus_distillation_plus_gate_loss(label_weight: float, temperature: float) -> None:
    model, batch = _classifier(), _batch()
    objective = GateDistillObjective(GateDistillConfig(enabled=True, temperature=temperature, label_weight=label_weight))
    torch.manual_seed(7)
    out = objective(model, batch)
    metrics = out.metrics
    # The same two passes by hand; dropout is 0, so only the gated pass draws random numbers.
    torch.manual_seed(7)
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with full_width(model):
        full = model(**inputs).logits
    gated = model(**inputs)
    want_full = F.cross_entropy(full.double(), labels)
    want_gated = (1 - label_weight) * _kl(gated.logits, full, temperature) + label_weight * F.cross_entropy(
        gated.logits.double(), labels
    )
    assert metrics["full_loss"].item() == pytest.approx(want_full.item(), rel=1e-5)
    assert metrics["gated_loss"].item() == pytest.approx(want_gated.item(), rel=1e-4)
    assert metrics["aux_loss"].item() == pytest.approx(gated.aux_loss.item(), rel=1e-6) and gated.aux_loss.item() > 0
    assert out.loss.item() == pytest.approx((want_full + want_gated + gated.aux_loss.double()).item(), rel=1e-5)
    assert not torch.allclose(gated.logits, full)  # half the groups closed: different networks


def test_hidden_state_term_is_the_mse_of_the_encoder_outputs_over_real_tokens() -> None:
    model, batch = _classifier(n_layers=1), _batch()
    objective = GateDistillObjective(GateDistillConfig(enabled=True, hidden_weight=0.5))
    torch.manual_seed(3)
    out = objective(model, batch)
    metrics = out.metrics
    torch.manual_seed(3)
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "token_type_ids")}
    with full_width(model):
        full = model.encoder(**inputs).last_hidden_state  # one post-LN block: its output
    gated = model.encoder(**inputs).last_hidden_state
    real = batch["attention_mask"].bool()
    want = ((gated[real].double() - full[real].double()) ** 2).mean()
    assert metrics["hidden_loss"].item() == pytest.approx(want.item(), rel=1e-5) and want.item() > 0
    rest = metrics["full_loss"] + metrics["gated_loss"] + metrics["aux_loss"]
    assert (out.loss - rest).item() == pytest.approx(0.5 * want.item(), rel=1e-4)
    # Off by default: no hooks left behind, and the term is exactly 0.
    assert all(not block._forward_hooks for block in model.encoder.blocks)
    assert GateDistillObjective(GateDistillConfig(enabled=True))(model, batch).metrics["hidden_loss"].item() == 0


def test_frozen_teacher_replaces_the_full_width_pass_and_is_not_trained_or_saved() -> None:
    model, batch = _classifier(), _batch()
    torch.manual_seed(5)
    teacher = TextClassifier(TextEncoder(TextEncoderConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=2,
                                                           d_ff=64, max_positions=16)), 3)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    objective = GateDistillObjective(GateDistillConfig(enabled=True, temperature=2.0, hidden_weight=1.0), teacher)
    objective.check_model(model)
    assert not objective.state_dict() and not list(objective.parameters())
    torch.manual_seed(7)
    out = objective(model, batch)
    out.loss.backward()
    torch.manual_seed(7)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        want_teacher = teacher.eval()(**inputs).logits
    gated = model(**inputs)
    assert out.metrics["full_loss"].item() == 0
    assert out.metrics["gated_loss"].item() == pytest.approx(_kl(gated.logits, want_teacher, 2.0).item(), rel=1e-4)
    assert out.metrics["hidden_loss"].item() > 0 and teacher.training is False
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    with pytest.raises(ValueError, match="teacher: has 2 labels"):
        GateDistillObjective(GateDistillConfig(enabled=True), TextClassifier(teacher.encoder, 2)).check_model(model)


def test_gradients_reach_the_weights_and_the_gates_and_the_gates_come_back() -> None:
    model = _classifier()
    gates = [block.ffn.gate for block in model.encoder.blocks]
    GateDistillObjective(GateDistillConfig(enabled=True))(model, _batch()).loss.backward()
    assert [block.ffn.gate for block in model.encoder.blocks] == gates
    ffn = model.encoder.blocks[0].ffn
    assert ffn.fc_in.weight.grad.abs().sum() > 0 and ffn.gate.groups.weight.grad.abs().sum() > 0
    assert model.head.out_proj.weight.grad.abs().sum() > 0


class _Kill(Callback):
    def on_step_end(self, trainer, step, metrics):
        if step == 5:
            raise KeyboardInterrupt


def test_training_with_it_resumes_exactly(tmp_path) -> None:
    """Killed after step 5 (checkpoint at 4) and resumed into a differently initialised model: the
    losses equal an uninterrupted run's (gate sampling and dropout come back with the RNG state)."""

    def run(out, seed, callbacks=(), **kw):
        torch.manual_seed(seed)
        config = TextEncoderConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_positions=16,
                                   sparsity=SparsityConfig(enabled=True, n_groups=8, target_active=0.5))
        model = TextClassifier(TextEncoder(config), 3)
        train = TrainConfig(lr=1e-3, batch_size=8, max_steps=8, save_every=2, out_dir=str(out), progress_bar=False,
                            tensorboard=False, device="cpu", precision="fp32", seed=3, **kw)
        objective = GateDistillObjective(GateDistillConfig(enabled=True))
        return Trainer(model, objective, _examples(), train, _collate, callbacks=callbacks).fit()

    full = run(tmp_path / "full", 0)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", 0, callbacks=[_Kill()])
    resumed = run(tmp_path / "cut", 7, resume=True)
    assert resumed.final_step == 8 and resumed.losses == full.losses and len(set(full.losses)) > 4


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="no gated FFN"):
        GateDistillObjective(GateDistillConfig(enabled=True)).check_model(_classifier(gates=False))
    batch = _batch()
    del batch["labels"]
    with pytest.raises(ValueError, match="GateDistillObjective: the batch has no `labels` tensor"):
        GateDistillObjective(GateDistillConfig(enabled=True))(_classifier(), batch)
    with pytest.raises(ConfigError, match="label_weight"):
        GateDistillConfig(label_weight=1.5)
    with pytest.raises(ConfigError, match="hidden_weight"):
        GateDistillConfig(hidden_weight=-1)
    with pytest.raises(ConfigError, match="temperature"):
        GateDistillConfig(temperature=0)
    with pytest.raises(ConfigError, match="gate_distill.enabled"):
        FinetuneConfig(model=ModelConfig(), gate_distill=GateDistillConfig(enabled=True))


def test_the_objective_never_changes_the_students_module_paths(tmp_path) -> None:
    """Trained on the labels or by gate distillation, the checkpoint holds the same keys: the
    classifier's own, no prefix (a TP plan keyed by module path applies to both)."""
    from hybridformer.losses import ClassificationObjective
    from hybridformer.training import load_training_state

    keys = {}
    for name, objective in (("labels", ClassificationObjective()), ("gates", GateDistillObjective(GateDistillConfig(enabled=True)))):
        model = _classifier()
        train = TrainConfig(lr=1e-3, batch_size=8, max_steps=1, out_dir=str(tmp_path / name), progress_bar=False,
                            tensorboard=False, device="cpu", precision="fp32")
        result = Trainer(model, objective, _examples(), train, _collate).fit()
        fresh = _classifier()
        load_training_state(result.checkpoint_path, fresh)  # strict: every key of the plain classifier
        keys[name] = set(model.state_dict())
    assert keys["labels"] == keys["gates"] == set(_classifier().state_dict())
    assert not any(k.startswith("classifier.") for k in keys["gates"])
