"""Answer ranking (prefill once, candidates scored in a batch) against a hand loop over the model's forward."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from hybridformer.attention import AttentionConfig
from hybridformer.models.answer_ranking import candidate_ids, candidate_log_likelihoods
from hybridformer.models.multimodal_flavors import build_initialised

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "losses"))
from multimodal_small import VOCAB, small_model  # noqa: E402


def _model(kind: str):
    model = small_model(seed=3)
    if kind == "hybrid":  # a window shorter than prompt + answer: the ring buffer wraps
        config = model.config
        attention = AttentionConfig(kind="hybrid", window=4, global_k=2, causal=True)
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


@pytest.mark.parametrize("kind", ["full", "hybrid"])
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
