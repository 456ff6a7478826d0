"""Batched decode over ring buffers (fusion/batched_decode.py) against the plain full forward."""

from __future__ import annotations

import pytest
import torch

from hybridformer.attention import AttentionConfig
from hybridformer.models.decoding import DecodeBatch, prefill
from tiny_decoders import mixed_context, tiny_decoder

LAYOUTS = {
    "union-block": dict(kind="hybrid", window=4, global_k=2),
    "union-sliding": dict(kind="hybrid", window=4, global_k=2, local="sliding"),
    "gated-block": dict(kind="hybrid", window=4, global_k=2, combine="gated"),
    "gated-sliding": dict(kind="hybrid", window=4, global_k=3, combine="gated", local="sliding"),
    "scorer-mlp": dict(kind="hybrid", window=4, global_k=2, scorer_hidden=8),
    "no-global": dict(kind="hybrid", window=4, global_k=0),
    "local": dict(kind="local", window=4, global_k=0),
    "text-only": dict(kind="hybrid", window=4, global_k=2),  # a decoder without cross-attention
}


def _decoder(layout: str):
    dims = {} if layout == "text-only" else None
    decoder = tiny_decoder(attention=AttentionConfig(**{"selection": "scorer", **LAYOUTS[layout]}), dims=dims)
    for block in decoder.blocks:  # a scorer that ranks tokens differently (it starts at zero)
        torch.nn.init.normal_(block.self_attention.scorer.out.weight) if hasattr(block.self_attention, "scorer") else None
    return decoder


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_ring_steps_equal_the_full_forward_with_sequences_at_different_positions(layout):
    decoder = _decoder(layout)
    kv = decoder.cross_kv(mixed_context()) if layout != "text-only" else [None] * len(decoder.blocks)
    rows = [[None if layer is None else layer.row(i) for layer in kv] for i in range(3)]
    ids = torch.randint(3, 40, (3, 30), generator=torch.Generator().manual_seed(2))
    starts = [5, 1, 8]  # prefilled to different lengths: blocks end at different steps per row
    with torch.no_grad():
        full = decoder(ids, kv=kv).logits  # (3, 30, V), the independent reference
        states, logits = prefill(decoder, [ids[i, :s] for i, s in enumerate(starts)], rows)
        torch.testing.assert_close(logits, full[torch.arange(3), [s - 1 for s in starts]], atol=1e-5, rtol=1e-4)
        batch = DecodeBatch(decoder, states)
        for offset in range(20):  # past several block ends (window 4) of every row
            pos = [s + offset for s in starts]
            step = batch.step(ids[torch.arange(3), pos])
            torch.testing.assert_close(step, full[torch.arange(3), pos], atol=1e-5, rtol=1e-4)
        assert batch._rings is not None  # the batched ring path ran, not the per-sequence caches
    assert [len(m.tokens) for m in batch.members] == [s + 20 for s in starts]
    assert [m.tokens for m in batch.members] == [ids[i, : s + 20].tolist() for i, s in enumerate(starts)]


@pytest.mark.parametrize("layout", ["union-block", "gated-sliding"])
def test_keep_forks_add_and_the_members_caches_continue_like_the_per_sequence_cache(layout):
    """Forked rows (beam search), a finished row dropped, a newcomer added (continuous batching), and a
    batch rebuilt from ``members`` (the server's concat) all decode like the full forward."""
    decoder = _decoder(layout)
    kv = decoder.cross_kv(mixed_context())
    rows = [[layer.row(i) for layer in kv] for i in range(3)]
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 40, (3, 40), generator=g)
    with torch.no_grad():
        full = decoder(ids, kv=kv).logits
        states, _ = prefill(decoder, [ids[0, :3], ids[1, :6]], rows[:2])
        batch = DecodeBatch(decoder, states)
        seen = [3, 6]
        for _ in range(5):
            batch.step(ids[[0, 1], seen])
            seen = [n + 1 for n in seen]
        batch.keep([1, 1, 0])  # row 1 forked: both copies must go on independently and alike
        seen = [seen[1], seen[1], seen[0]]
        source = [1, 1, 0]
        (new,), _ = prefill(decoder, [ids[2, :2]], rows[2:])
        batch.add(new)
        seen.append(2)
        source.append(2)
        for t in range(7):
            if t == 3:
                batch.keep([0, 2, 3])  # a fork finishes
                seen, source = [seen[i] for i in (0, 2, 3)], [source[i] for i in (0, 2, 3)]
            if t == 5:  # the server's concat: a new batch from the members' (synced) states
                batch = DecodeBatch(decoder, batch.members)
            step = batch.step(ids[source, seen])
            torch.testing.assert_close(step, full[source, seen], atol=1e-5, rtol=1e-4)
            seen = [n + 1 for n in seen]
    for member, row, n in zip(batch.members, source, seen):
        assert member.tokens == ids[row, :n].tolist()
        assert all(c.length == n for c in member.caches)
        assert all(c.keys.shape[2] <= 4 for c in member.caches)  # bounded: window 4


def test_a_bad_token_or_an_overlong_sequence_is_a_clear_error():
    decoder = _decoder("union-block")
    states, _ = prefill(decoder, [torch.tensor([1, 5])], [[None, None]])
    batch = DecodeBatch(decoder, states)
    with pytest.raises(ValueError, match=r"tokens: ids must be in \[0, vocab_size=40\)"):
        batch.step(torch.tensor([40]))
    with pytest.raises(ValueError, match=r"tokens: expected shape \(1,\)"):
        batch.step(torch.tensor([3, 4]))
    with torch.no_grad():
        for _ in range(94):
            batch.step(torch.tensor([3]))
        with pytest.raises(ValueError, match="max_positions=96"):
            batch.step(torch.tensor([3]))
