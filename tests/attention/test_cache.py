"""KVCache: step-by-step causal decoding equals the full causal forward, with bounded memory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hybridformer.attention import AttentionConfig, HybridAttention, KVCache

D_MODEL, HEADS, WINDOW, K = 16, 2, 4, 3


def make_layer(**fields) -> HybridAttention:
    torch.manual_seed(0)
    fields = dict(d_model=D_MODEL, n_heads=HEADS, window=WINDOW, global_k=K, causal=True, selection="scorer") | fields
    layer = HybridAttention(AttentionConfig(**fields))
    if layer.config.kind == "hybrid":
        nn.init.normal_(layer.scorer.net.weight)  # random scores, so selection changes from block to block
    return layer.double().eval()


def inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states and a mask with left padding (sequence 1) and a hole (sequence 0)."""
    torch.manual_seed(1)
    x = torch.randn(2, n, D_MODEL, dtype=torch.float64)
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, :3] = False
    mask[0, 6] = False
    return x, mask


LAYERS = [
    dict(kind="full"),
    dict(local="block", combine="union"),
    dict(local="sliding", combine="union"),
    dict(local="block", combine="gated"),
    dict(local="sliding", combine="gated"),
    dict(local="sliding", combine="union", global_k=0),
]


@pytest.mark.parametrize("fields", LAYERS, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_token_by_token_decoding_equals_full_forward(fields):
    layer = make_layer(**fields)
    x, mask = inputs(19)  # not a multiple of the window
    with torch.no_grad():
        full = layer(x, mask)
        cache = KVCache()
        steps = [layer(x[:, t : t + 1], mask[:, t : t + 1], cache=cache) for t in range(19)]
    decoded = torch.cat([step.hidden_states for step in steps], dim=1)
    torch.testing.assert_close(decoded, full.hidden_states, atol=1e-12, rtol=0)
    assert cache.length == 19
    if full.global_indices is not None:  # the set in force at step t is the full forward's set of t's block
        for t, step in enumerate(steps):
            assert torch.equal(step.global_indices[:, 0].sort().values, full.global_indices[:, t // WINDOW].sort().values)


@pytest.mark.parametrize("fields", LAYERS[:5], ids=lambda f: "-".join(str(v) for v in f.values()))
def test_prefill_then_steps_equals_full_forward(fields):
    layer = make_layer(**fields)
    x, mask = inputs(17)
    with torch.no_grad():
        full = layer(x, mask).hidden_states
        cache = KVCache()
        parts = [layer(x[:, :10], mask[:, :10], cache=cache), layer(x[:, 10:13], mask[:, 10:13], cache=cache)]
        parts += [layer(x[:, t : t + 1], mask[:, t : t + 1], cache=cache) for t in range(13, 17)]
    torch.testing.assert_close(torch.cat([p.hidden_states for p in parts], dim=1), full, atol=1e-12, rtol=0)


@pytest.mark.parametrize("local", ["block", "sliding"])
def test_cache_memory_stays_bounded(local):
    layer = make_layer(local=local)
    cache = KVCache()
    sizes = []
    with torch.no_grad():
        for _ in range(40):
            layer(torch.randn(2, 1, D_MODEL, dtype=torch.float64), cache=cache)
            assert cache.keys.shape[2] <= WINDOW
            assert cache.global_keys.shape == (2, HEADS, K, D_MODEL // HEADS)
            sizes.append(cache.memory_bytes())
    assert max(sizes[WINDOW:]) == max(sizes[:WINDOW * 2])  # no growth once the first blocks are done


def test_full_kind_cache_keeps_every_token():
    layer = make_layer(kind="full")
    cache = KVCache()
    with torch.no_grad():
        for _ in range(9):
            layer(torch.randn(1, 1, D_MODEL, dtype=torch.float64), cache=cache)
    assert cache.keys.shape == (1, HEADS, 9, D_MODEL // HEADS)


def test_cache_rejects_another_batch_size():
    layer = make_layer()
    cache = KVCache()
    with torch.no_grad():
        layer(torch.randn(2, 1, D_MODEL, dtype=torch.float64), cache=cache)
        with pytest.raises(ValueError, match=r"cache.*2 sequences.*batch size 3"):
            layer(torch.randn(3, 1, D_MODEL, dtype=torch.float64), cache=cache)
