"""Answer ranking (prefill once, candidates scored in a batch) against a hand loop over the model's forward."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from hybridformer.attention import AttentionConfig
from hybridformer.models.answer_ranking import (best_candidates, candidate_ids, candidate_log_likelihoods, candidate_pmi,
                                               reference_log_likelihoods)
from hybridformer.models.multimodal_flavors import build_initialised

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))
from multimodal_small import VOCAB, small_model  # noqa: E402


def _model(kind: str):
    model = small_model(seed=3)
    if kind != "full":  # a window shorter than prompt + answer: the ring buffer wraps (pooled: blocks close)
        config = model.config
        attention = AttentionConfig(kind="hybrid", window=4, global_k=2, causal=True, selection=kind.removeprefix("hybrid-"),
                                    pool_block=4)
        config = dataclasses.replace(config, decoder=dataclasses.replace(config.decoder, attention=attention))
        torch.manual_seed(3)
        model = build_initialised(config)
    with torch.no_grad():  # open the cross-attention gates (they start at 0): the image must matter
        for block in model.decoder.blocks:
            block.cross_attention.gate.fill_(1.0)
    return model.eval()


def _hand_loop(model, prompts, candidates, images):
    """One (prompt, candidate) pair at a time: the whole sequence through ``model.forward``, the
    candidate's tokens' log-probabilities summed in float64."""
    out = torch.zeros(len(prompts), len(candidates), dtype=torch.float64)
    for b, prompt in enumerate(prompts):
        for c, cand in enumerate(candidates):
            ids = torch.cat([prompt, torch.tensor(cand)])[None]  # (1, P + m)
            logits = model(ids, images=images[b:b + 1]).logits[0].double()  # (P + m, V)
            logp = logits.log_softmax(-1)
            p = prompt.numel()
            out[b, c] = sum(logp[p - 1 + t, tok] for t, tok in enumerate(cand))
    return out


@pytest.mark.parametrize("kind", ["full", "hybrid-scorer", "hybrid-pooled"])
def test_batched_ranking_equals_one_candidate_at_a_time(kind):
    model = _model(kind)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.tensor([1, 7, 9, 11]), torch.tensor([1, 5]), torch.tensor([1, 30, 31, 32, 33, 34])]
    candidates = [[8, 2], [8, 9, 10, 2], [40, 2], [12, 13, 2], [8]]  # "8" and "8 ..." share a first token
    images = torch.rand(3, 1, 32, 32, generator=g)
    got = candidate_log_likelihoods(model, prompts, candidates, images=images)
    want = _hand_loop(model, prompts, candidates, images)
    assert got.shape == (3, 5)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)
    # chunked decoding (2 pairs per batch) gives the same numbers
    torch.testing.assert_close(candidate_log_likelihoods(model, prompts, candidates, max_members=2, images=images), got)
    # the image matters: another image, other scores
    other = candidate_log_likelihoods(model, prompts, candidates, images=torch.rand(3, 1, 32, 32, generator=g))
    assert not torch.allclose(other, got)


def test_candidate_ids_append_the_end_token_and_reject_empty_answers():
    from hybridformer.data import minilm_tokenizer

    tok = minilm_tokenizer()
    ids = candidate_ids(tok, ["yes", "2 dogs"], eos_token_id=102)
    assert ids[0] == tok("yes", add_special_tokens=False)["input_ids"] + [102]
    assert len(ids[1]) == 3 and ids[1][-1] == 102
    assert candidate_ids(tok, ["yes"], None) == [tok("yes", add_special_tokens=False)["input_ids"]]
    with pytest.raises(ValueError, match="tokenizes to no token"):
        candidate_ids(tok, [""], 102)
    with pytest.raises(ValueError, match="candidates"):
        candidate_log_likelihoods(small_model(), [torch.tensor([1])], [[]], images=torch.rand(1, 1, 32, 32))
    assert VOCAB == 50


def test_pmi_equals_the_hand_computation_against_reference_images():
    """pmi = log p(c | prompt, own image) - log mean_k p(c | prompt, reference image k), every term from
    the hand loop over model.forward (float64)."""
    model = _model("full")
    g = torch.Generator().manual_seed(1)
    prompts = [torch.tensor([1, 7, 9]), torch.tensor([1, 5, 6, 30]), torch.tensor([1, 7, 9])]  # a repeated prompt
    candidates = [[8, 2], [40, 2], [12, 13, 2]]
    images, reference = torch.rand(3, 1, 32, 32, generator=g), torch.rand(3, 1, 32, 32, generator=g)
    own = _hand_loop(model, prompts, candidates, images)  # (B, C)
    per_ref = torch.stack([_hand_loop(model, prompts, candidates, reference[k:k + 1].expand(3, -1, -1, -1))
                           for k in range(3)])  # (K, B, C)
    want = own - (per_ref.exp().mean(0)).log()
    got = candidate_pmi(model, prompts, candidates, {"images": reference}, images=images)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)
    marginal = reference_log_likelihoods(model, prompts, candidates, {"images": reference})
    torch.testing.assert_close(marginal.double(), per_ref.exp().mean(0).log(), atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="reference: give K >= 1"):
        reference_log_likelihoods(model, prompts, candidates, {"images": reference[:0]})


def test_a_model_that_does_not_read_the_image_ties_every_candidate_and_the_first_wins():
    """Gates at exactly 0 (an untrained model): the image changes nothing, every PMI is exactly 0, and
    the tie goes to candidate 0 (the most frequent answer where callers sort by frequency)."""
    model = small_model(seed=3).eval()
    assert all(block.cross_attention.gate.item() == 0.0 for block in model.decoder.blocks)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.tensor([1, 7, 9]), torch.tensor([1, 5]), torch.tensor([1, 7, 9])]
    candidates = [[8, 2], [40, 2], [12, 13, 2]]
    pmi = candidate_pmi(model, prompts, candidates, {"images": torch.rand(4, 1, 32, 32, generator=g)},
                        images=torch.rand(3, 1, 32, 32, generator=g))
    assert pmi.abs().max() <= 1e-5  # 0 up to the rounding of differently shaped batches
    assert best_candidates(pmi) == [0, 0, 0]
    likelihood = candidate_log_likelihoods(model, prompts, candidates, images=torch.rand(3, 1, 32, 32, generator=g))
    assert best_candidates(likelihood) == likelihood.argmax(1).tolist()  # no tie: the plain argmax


def test_best_candidates_ties_within_the_tolerance_go_to_the_lowest_index():
    scores = torch.tensor([[0.0, 0.5, 0.49995], [1.0, 1.00005, 0.0], [-3.0, -2.0, -1.0]])
    assert best_candidates(scores) == [1, 0, 2]
    assert best_candidates(scores, tolerance=0.0) == [1, 1, 2]
