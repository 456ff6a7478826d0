"""ITM hard negatives (ALBEF weights, never the positive, labels), the captioning targets and loss
against hand-computed cross-entropy, fused MLM, and the multi-task sum on a small real model."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hybridformer.losses import (
    CaptionObjective, ContrastiveObjective, FusedMLMObjective, MatchingObjective, MultiTaskObjective,
    caption_loss, caption_targets, matching_batch, negative_weights,
)

sys.path.insert(0, str(Path(__file__).parent))
from multimodal_small import small_batch, small_model  # noqa: E402


def test_negative_weights_are_the_softmax_without_the_positive():
    sim = torch.tensor([[5.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 3.0, 3.0]])
    w = negative_weights(sim)
    expected = torch.softmax(sim, 1) * (1 - torch.eye(3))
    torch.testing.assert_close(w, expected)
    excluded = torch.tensor([[False, True, True], [False, False, False], [False, False, False]])
    w = negative_weights(sim, excluded)  # row 0 has nothing left: uniform over the others
    torch.testing.assert_close(w[0], torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="similarity"):
        negative_weights(torch.zeros(1, 1))


def test_matching_batch_never_pairs_a_positive_as_negative():
    batch = small_batch(batch=4)
    batch["input_ids"][3] = batch["input_ids"][2]  # a repeated caption is not a negative of its twin
    sim = torch.randn(4, 4)
    for seed in range(20):
        pairs = matching_batch(batch, sim, torch.Generator().manual_seed(seed))
        assert pairs.labels.tolist() == [1] * 4 + [0] * 8
        neg_text = pairs.input_ids[4:8]
        for i in range(4):
            assert not torch.equal(neg_text[i], batch["input_ids"][i])
            assert not torch.equal(pairs.context["images"][8 + i], batch["images"][i])
        assert pairs.context["images"].shape[0] == 12


def test_caption_targets_and_loss_ignore_padding():
    ids = torch.tensor([[1, 7, 8, 2, 0], [1, 9, 2, 0, 0]])
    mask = (ids != 0).long()
    assert caption_targets(ids, mask).tolist() == [[7, 8, 2, -100, -100], [9, 2, -100, -100, -100]]
    logits = torch.randn(2, 5, 11)
    by_hand = torch.stack([F.cross_entropy(logits[0, :3], ids[0, 1:4], reduction="sum"),
                           F.cross_entropy(logits[1, :2], ids[1, 1:3], reduction="sum")]).sum() / 5
    assert caption_loss(logits, ids, mask).item() == pytest.approx(by_hand.item(), rel=1e-6)
    changed = logits.clone()
    changed[1, 2:] = 100.0  # scores at padded positions do not matter
    assert caption_loss(changed, ids, mask).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_multitask_is_the_weighted_sum_of_its_terms_and_trains_the_temperature():
    model, batch = small_model(), small_batch()
    model.eval()  # no dropout: each term gives the same value alone and in the sum
    caption, itc = CaptionObjective(), ContrastiveObjective()
    mlm = FusedMLMObjective(mask_token_id=3, vocab_size=50, special_token_ids=[0, 1, 2])
    torch.manual_seed(0)
    parts = {"itc": itc(model, batch).loss.item(), "caption": caption(model, batch).loss.item()}
    torch.manual_seed(1)
    parts["mlm"] = mlm(model, batch).loss.item()
    objective = MultiTaskObjective({"itc": (itc, 1.0), "itm": (MatchingObjective(), 0.5),
                                    "caption": (caption, 2.0), "mlm": (mlm, 0.25)})
    assert [n for n, _ in objective.named_parameters()] == ["terms.itc.log_temperature"]
    torch.manual_seed(1)  # the MLM masks are drawn after ITM's sampling: compare terms via the metrics
    out = objective(model, batch)
    m = out.metrics
    assert m["itc_loss"].item() == pytest.approx(parts["itc"], rel=1e-5)
    assert m["caption_loss"].item() == pytest.approx(parts["caption"], rel=1e-5)
    total = m["itc_loss"] + 0.5 * m["itm_loss"] + 2.0 * m["caption_loss"] + 0.25 * m["mlm_loss"]
    assert out.loss.item() == pytest.approx(total.item(), rel=1e-5) and m["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    assert {"itc_accuracy", "itm_accuracy", "caption_accuracy", "mlm_accuracy", "temperature"} <= set(m)
    out.loss.backward()
    assert itc.log_temperature.grad is not None and model.itm_head.weight.grad.abs().sum() > 0
