"""Selection API (issue 16): kind="local", user-supplied global_indices, deterministic ties, bounded
scores — each against the float64 dense reference or a brute-force ranking."""

from __future__ import annotations

import pytest
import torch

from hybridformer.attention import AttentionConfig, HybridAttention, KVCache, dense_mask, reference_attention
from hybridformer.attention.scorer import TokenScorer, merge_topk, select_prefix_topk, select_topk
from test_hybrid import D_MODEL, HEADS, make_layer, merge, padding, qkv


@pytest.mark.parametrize("causal", [False, True])
def test_local_kind_builds_no_selector_and_equals_window_only_reference(causal):
    layer = make_layer(kind="local", window=4, global_k=3, causal=causal)
    assert not hasattr(layer, "scorer") and not hasattr(layer, "compressed")
    x = torch.randn(2, 13, D_MODEL, dtype=torch.float64)
    mask = padding(2, 13, "holes")
    out = layer(x, mask)
    assert out.global_indices is None and out.scores is None
    sees = dense_mask(2, 13, window=4, local="block", causal=causal, key_padding_mask=mask)
    expected = layer.o_proj(merge(reference_attention(*qkv(layer, x), sees)))
    torch.testing.assert_close(out.hidden_states, expected, atol=1e-10, rtol=0)


def test_local_kind_decodes_with_a_cache_like_the_full_forward():
    layer = make_layer(kind="local", window=4, causal=True, local="sliding")
    x = torch.randn(2, 11, D_MODEL, dtype=torch.float64)
    with torch.no_grad():
        full = layer(x).hidden_states
        cache = KVCache()
        steps = torch.cat([layer(x[:, t : t + 1], cache=cache).hidden_states for t in range(11)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-12, rtol=0)
    assert cache.global_keys.shape[2] == 0  # nothing global is kept


@pytest.mark.parametrize("per_block", [False, True])
def test_user_global_indices_bypass_the_scorer_and_equal_the_reference(per_block):
    layer = make_layer(window=4, global_k=3).train()  # training: the scorer would add noise and a bias
    x = torch.randn(2, 13, D_MODEL, dtype=torch.float64)
    mask = padding(2, 13, "holes")
    given = torch.tensor([[12, 2, -1], [5, 9, 10]])
    if per_block:  # one set per query block: (B, 4, K)
        given = torch.stack([given, given.flip(-1), given.roll(1, -1), torch.full_like(given, -1)], dim=1)
    out = layer(x, mask, global_indices=given)
    assert out.scores is None and torch.equal(out.global_indices, given)
    sees = dense_mask(2, 13, window=4, local="block", global_indices=given, key_padding_mask=mask)
    expected = layer.o_proj(merge(reference_attention(*qkv(layer, x), sees)))
    torch.testing.assert_close(out.hidden_states, expected, atol=1e-10, rtol=0)
    out.hidden_states.sum().backward()
    assert all(p.grad is None for p in layer.scorer.parameters())  # the scorer did not run


def test_bad_global_indices_name_the_argument():
    x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
    layer = make_layer(window=4, global_k=2)
    with pytest.raises(ValueError, match=r"global_indices.*LongTensor.*float32"):
        layer(x, global_indices=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"global_indices.*\(2, 3, K\).*\(2, 2, 2\)"):
        layer(x, global_indices=torch.zeros(2, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"global_indices.*kind='hybrid'.*'local'"):
        make_layer(kind="local", window=4)(x, global_indices=torch.zeros(2, 2, dtype=torch.long))
    causal = make_layer(window=4, global_k=2, causal=True)
    with pytest.raises(ValueError, match=r"global_indices.*cache"):
        causal(x, cache=KVCache(), global_indices=torch.zeros(2, 2, dtype=torch.long))


def brute_force_ranked(scores: list[float], eligible: list[bool], k: int) -> list[int]:
    """The defined order: decreasing score, then increasing position."""
    ranked = sorted((-scores[j], j) for j in range(len(scores)) if eligible[j])
    return [j for _, j in ranked[:k]]


def test_ties_are_broken_by_position():
    torch.manual_seed(0)
    scores = torch.randint(0, 3, (3, 20)).double()  # many ties
    mask = torch.rand(3, 20) > 0.2
    chosen = select_topk(scores, 5, mask)
    for b in range(3):
        expected = brute_force_ranked(scores[b].tolist(), mask[b].tolist(), 5)
        assert [j for j in chosen[b].tolist() if j >= 0] == expected
    sets = select_prefix_topk(scores, 4, 5, mask)  # built through merge_topk block by block
    for b in range(3):
        for block in range(4):
            eligible = [bool(mask[b, j]) and j < block * 5 for j in range(20)]
            expected = brute_force_ranked(scores[b].tolist(), eligible, 4)
            assert [j for j in sets[b, block].tolist() if j >= 0] == expected


def test_untrained_scorer_selects_the_first_real_tokens_in_eval():
    layer = HybridAttention(AttentionConfig(selection="scorer", d_model=D_MODEL, n_heads=HEADS, window=4, global_k=3)).eval()
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, :2] = False
    out = layer(torch.randn(2, 10, D_MODEL), mask)
    assert out.global_indices.tolist() == [[0, 1, 2], [2, 3, 4]]


def test_merge_topk_keeps_the_earlier_of_equal_scores():
    top = merge_topk(torch.tensor([[1.0, 1.0]]), torch.tensor([[0, 3]]), torch.tensor([[1.0, 2.0]]), torch.tensor([[4, 5]]))
    assert top.indices.tolist() == [[5, 0]]


def test_scores_are_bounded_by_the_cap_and_keep_the_ranking():
    scorer = TokenScorer(D_MODEL, cap=5.0).double()
    raw = TokenScorer(D_MODEL, cap=0.0).double()
    with torch.no_grad():
        for s in (scorer, raw):
            s.out.weight.copy_(torch.linspace(-4, 4, D_MODEL))
    torch.manual_seed(0)
    x = 3 * torch.randn(4, 30, D_MODEL, dtype=torch.float64)
    bounded, unbounded = scorer(x), raw(x)
    assert unbounded.abs().max() > 30  # the raw output would be far outside the cap
    assert bounded.abs().max() < 5.0
    torch.testing.assert_close(bounded, 5.0 * torch.tanh(unbounded / 5.0))
    assert torch.equal(bounded.argsort(dim=-1, stable=True), unbounded.argsort(dim=-1, stable=True))
    assert HybridAttention(AttentionConfig(selection="scorer", d_model=D_MODEL, n_heads=HEADS)).scorer.cap == 5.0  # the default
