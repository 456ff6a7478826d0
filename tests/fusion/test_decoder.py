"""The joint decoder: cached step-by-step decoding equals the plain forward; per-sequence caches."""

from __future__ import annotations

import pytest
import torch

from hybridformer.fusion import stack_kv
from tiny_decoders import mixed_context, tiny_decoder


@pytest.mark.parametrize("kind", ["hybrid", "full"])
def test_cached_decoding_equals_the_full_forward_with_sequences_at_different_positions(kind):
    decoder = tiny_decoder(kind)
    ids = torch.randint(3, 40, (3, 14))
    kv = decoder.cross_kv(mixed_context())
    with torch.no_grad():
        full = decoder(ids, kv=kv).logits
        caches = [decoder.new_caches() for _ in range(3)]
        starts = [5, 1, 9]  # each sequence prefilled to its own length, then stepped together
        rows = [[layer.row(i) for layer in kv] for i in range(3)]
        for i, start in enumerate(starts):
            out = decoder(ids[i : i + 1, :start], kv=rows[i], caches=[caches[i]]).logits
            torch.testing.assert_close(out[0], full[i, :start], atol=1e-5, rtol=1e-4)
        stacked = [stack_kv([rows[i][layer] for i in range(3)]) for layer in range(len(decoder.blocks))]
        for offset in range(4):
            pos = [s + offset for s in starts]
            step = decoder(ids[torch.arange(3), pos][:, None], kv=stacked, caches=caches).logits[:, 0]
            torch.testing.assert_close(step, full[torch.arange(3), pos], atol=1e-5, rtol=1e-4)


def test_hybrid_cache_stays_bounded():
    decoder = tiny_decoder("hybrid")
    caches = [decoder.new_caches()]
    with torch.no_grad():
        decoder(torch.randint(3, 40, (1, 40)), caches=caches)
    window, global_k = 4, 2
    assert all(c.keys.shape[2] <= window and c.global_keys.shape[2] == global_k for c in caches[0])


def test_position_limit_is_a_clear_error():
    decoder = tiny_decoder()
    with pytest.raises(ValueError, match="max_positions"):
        decoder(torch.randint(3, 40, (1, 97)))


def test_a_gated_sparse_ffn_decoder_decodes_like_its_full_forward_and_reports_its_gate_loss():
    from hybridformer.sparsity import SparsityConfig

    decoder = tiny_decoder(sparsity=SparsityConfig(enabled=True, n_groups=4, target_active=0.5))
    ids = torch.randint(3, 40, (2, 10))
    decoder.train()
    assert float(decoder(ids).aux_loss.detach()) > 0
    decoder.eval()
    with torch.no_grad():
        full = decoder(ids).logits
        caches = [decoder.new_caches() for _ in range(2)]
        steps = [decoder(ids[:, t : t + 1], caches=caches).logits[:, 0] for t in range(10)]
    torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=1e-4)
