"""MLM masking statistics and the loss against a hand-computed cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch

from hybridformer.losses import IGNORE_INDEX, MLMLoss, mask_tokens, mlm_loss

CLS, SEP, PAD, MASK, VOCAB = 101, 102, 0, 103, 1000


def _batch(b: int = 256, n: int = 128, seed: int = 0):
    """Random ids in [200, VOCAB) framed by [CLS] ... [SEP] and right-padded to n."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(200, VOCAB, (b, n), generator=g)
    lengths = torch.randint(8, n + 1, (b,), generator=g)
    attention = (torch.arange(n) < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(b), lengths - 1] = SEP
    ids[attention == 0] = PAD
    special = (ids == CLS) | (ids == SEP) | (ids == PAD)
    return ids, attention, special


def test_masking_rates_are_15_percent_and_80_10_10():
    ids, attention, special = _batch()
    g = torch.Generator().manual_seed(1)
    out = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_tokens_mask=special,
                      attention_mask=attention, generator=g)
    eligible = ~special
    targets = out.labels != IGNORE_INDEX
    n_eligible = int(eligible.sum())  # ~15k tokens: std of the rate ~0.003
    assert n_eligible > 10_000
    assert abs(targets.sum().item() / n_eligible - 0.15) < 0.01
    n_t = int(targets.sum())
    masked = (out.input_ids == MASK) & targets
    unchanged = (out.input_ids == ids) & targets
    randomised = targets & ~masked & ~unchanged
    assert abs(masked.sum().item() / n_t - 0.8) < 0.02
    # A random replacement can draw the original id (1/VOCAB) or [MASK]: negligible here.
    assert abs(randomised.sum().item() / n_t - 0.1) < 0.015
    assert abs(unchanged.sum().item() / n_t - 0.1) < 0.015
    # Labels hold the original ids at targets; nothing outside targets changes.
    assert torch.equal(out.labels[targets], ids[targets])
    assert torch.equal(out.input_ids[~targets], ids[~targets])


def test_specials_and_padding_never_touched():
    ids, attention, special = _batch(b=64, n=32, seed=3)
    out = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=[CLS, SEP, PAD],
                      attention_mask=attention, mlm_probability=1.0, generator=torch.Generator().manual_seed(0))
    assert (out.labels[special] == IGNORE_INDEX).all()
    assert torch.equal(out.input_ids[special], ids[special])
    assert (out.labels[~special] != IGNORE_INDEX).all()  # p = 1: every eligible token is a target
    # Padding excluded by attention_mask alone, even if not flagged special.
    pad_only = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=[CLS, SEP],
                           attention_mask=attention, mlm_probability=1.0)
    assert (pad_only.labels[attention == 0] == IGNORE_INDEX).all()


def test_generator_makes_masking_reproducible_and_input_untouched():
    ids, attention, special = _batch(b=8, n=16)
    before = ids.clone()
    a = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_tokens_mask=special,
                    generator=torch.Generator().manual_seed(7))
    b = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_tokens_mask=special,
                    generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert torch.equal(ids, before)


def test_mask_tokens_rejects_bad_arguments():
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="special_tokens_mask/special_token_ids"):
        mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match=r"input_ids: expected \(B, N\)"):
        mask_tokens(ids[0], mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=[CLS])
    with pytest.raises(ValueError, match="attention_mask: expected shape"):
        mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=[CLS], attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_token_ids=[CLS], mlm_probability=1.5)


def test_loss_equals_hand_computed_cross_entropy():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [1.0, 3.0, 0.0]]])  # (1, 3, 3)
    labels = torch.tensor([[0, IGNORE_INDEX, 1]])

    def nll(row, k):
        return -(row[k] - math.log(sum(math.exp(x) for x in row)))

    expected = (nll([2.0, 0.0, -1.0], 0) + nll([1.0, 3.0, 0.0], 1)) / 2
    assert mlm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    out = MLMLoss()(logits, labels)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.num_targets.item() == 2 and out.accuracy.item() == 1.0
    # Flattened (M, V) logits give the same value.
    assert mlm_loss(logits[0], labels[0]).item() == pytest.approx(expected, rel=1e-6)


def test_loss_without_targets_is_zero_not_nan():
    logits = torch.randn(2, 4, 5, requires_grad=True)
    loss = mlm_loss(logits, torch.full((2, 4), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    with pytest.raises(ValueError, match="logits/labels"):
        mlm_loss(logits, torch.zeros(2, 5, dtype=torch.long))
