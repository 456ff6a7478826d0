"""selection="pooled" (query-block pooled selection) against a loop-built float64 reference written
from the definition: the pooled queries, the per-block sets, the gated pooled branch, the layer's output
and its gradient (union and gated, causal and not, padding, N not a multiple of the window); causal
prefix consistency; cached decoding equal to the full causal forward; a planted far token it learns to
find; bad configurations."""

from __future__ import annotations

import math

import pytest
import torch

from hybridformer.attention import AttentionConfig, HybridAttention, KVCache, dense_mask, reference_attention
from hybridformer.attention import pooled as pooled_module
from hybridformer.attention.pooled import pool_queries, select_keys, topk_positions
from hybridformer.config import ConfigError
from test_hybrid import D_MODEL, HEADS, HEAD_DIM, merge, padding, qkv
from test_scorer import one_thread, retrieval_accuracy  # noqa: F401 (fixture)

WINDOW, POOL, K = 4, 8, 3


def make_layer(causal: bool, combine: str = "union", seed: int = 0, local: str = "block", global_k: int = K,
               pinned: int = 0, attend_all: bool = False) -> HybridAttention:
    torch.manual_seed(seed)
    config = AttentionConfig(
        d_model=D_MODEL, n_heads=HEADS, window=WINDOW, global_k=global_k, selection="pooled", pool_block=POOL,
        causal=causal, combine=combine, local=local, pinned_global=pinned, global_queries_attend_all=attend_all,
    )
    layer = HybridAttention(config).double().eval()
    torch.nn.init.normal_(layer.pooled.pool_proj.weight)  # learned pooling, not the initial mean
    return layer


def reference_sets_and_branch(layer: HybridAttention, x: torch.Tensor, mask: torch.Tensor | None, causal: bool,
                              pinned: int = 0):
    """Per-window sets and the pooled branch's per-token output (before the gate), by loops, float64.

    Pool block p's pooled query (head h) is the softmax(pool_proj(x)_h)-weighted sum of its real
    tokens' queries minus keys; block p is served by its own pooled query over every real key, or (causal) by
    block p - 1's over the real keys before p·POOL. Query window w's set: the top-K keys outside
    window w by its pool block's branch probabilities summed over the heads, ties to the earlier
    position, listed in position order. With `pinned` p: the real positions 0 .. p - 1 (-1 for padding)
    come first in every set and the top K - p are picked from the positions >= p.
    """
    q, k, v = qkv(layer, x)
    batch, n = x.shape[:2]
    scale = HEAD_DIM**-0.5
    pool_logits = layer.pooled.pool_proj(x)  # (B, N, H)
    real = lambda b, j: mask is None or bool(mask[b, j])  # noqa: E731
    branch = torch.zeros_like(q)
    sets = torch.full((batch, math.ceil(n / WINDOW), K), -1, dtype=torch.long)
    for b in range(batch):
        for p in range(math.ceil(n / POOL)):
            voter = p - 1 if causal else p
            members = [i for i in range(voter * POOL, min(n, (voter + 1) * POOL)) if voter >= 0 and real(b, i)]
            keys = [j for j in range(n) if real(b, j) and (j < p * POOL or not causal)]
            if not members or not keys:
                continue
            importance = torch.zeros(len(keys), dtype=torch.float64)
            for h in range(HEADS):
                w = torch.softmax(torch.stack([pool_logits[b, i, h] for i in members]), 0)
                pooled = sum(w[m] * (q[b, h, i] - k[b, h, i]) for m, i in enumerate(members))
                prob = torch.softmax(torch.stack([pooled @ k[b, h, j] * scale for j in keys]), 0)
                out = sum(prob[m] * v[b, h, j] for m, j in enumerate(keys))
                for i in range(p * POOL, min(n, (p + 1) * POOL)):
                    branch[b, h, i] = out
                importance += prob.detach()
            for g in range(p * POOL // WINDOW, min(sets.shape[1], (p + 1) * POOL // WINDOW)):
                outside = [m for m in range(len(keys)) if keys[m] // WINDOW != g and keys[m] >= pinned]
                order = sorted(outside, key=lambda m: (-importance[m].item(), keys[m]))
                chosen = sorted(keys[m] for m in order[: K - pinned])
                sets[b, g, pinned : pinned + len(chosen)] = torch.tensor(chosen, dtype=torch.long)
    for b in range(batch):
        for j in range(pinned):
            sets[b, :, j] = j if j < n and real(b, j) else -1
    return sets, branch


def reference_output(layer: HybridAttention, x: torch.Tensor, mask: torch.Tensor | None, causal: bool):
    """(sets, layer output) from the definition: kernel part over window ∪ set (union) or gated
    local/selected branches, plus the gated pooled branch, through o_proj. With pinned tokens and
    global_queries_attend_all, a real pinned token's query sees every real key."""
    pinned = layer.config.pinned_global
    sets, branch = reference_sets_and_branch(layer, x, mask, causal, pinned)
    batch, n = x.shape[:2]
    q, k, v = qkv(layer, x)
    local = layer.config.local
    if layer.config.combine == "union":
        sees = dense_mask(batch, n, window=WINDOW, local=local, global_indices=sets, causal=causal, key_padding_mask=mask)
        if layer.config.global_queries_attend_all:
            for b in range(batch):
                for i in range(min(pinned, n)):
                    if mask is None or mask[b, i]:
                        sees[b, i] = True if mask is None else mask[b]
        main = reference_attention(q, k, v, sees)
    else:
        g = torch.sigmoid(layer.gate_proj(x)).view(batch, n, HEADS, 2).transpose(1, 2)
        near = reference_attention(q, k, v, dense_mask(batch, n, window=WINDOW, local=local, causal=causal, key_padding_mask=mask))
        only = torch.zeros(batch, n, n, dtype=torch.bool)  # query i sees just its block's set
        for b in range(batch):
            for i in range(n):
                only[b, i, [j for j in sets[b, i // WINDOW].tolist() if j >= 0]] = True
        chosen = reference_attention(q, k, v, only) * only.any(-1)[:, None, :, None]  # empty set: zeros
        main = g[..., :1] * near + g[..., 1:] * chosen
    gate = torch.sigmoid(layer.pooled.gate_proj(x)).transpose(1, 2)[..., None]  # (B, H, N, 1)
    return sets, layer.o_proj(merge(main + gate * branch))


def assert_layer_equals_reference(layer: HybridAttention, n: int, pad: str, causal: bool, params: list) -> None:
    """Sets, output and the gradient of `params` against the float64 loop reference."""
    x = torch.randn(2, n, D_MODEL, dtype=torch.float64)
    mask = padding(2, n, pad)
    out = layer(x, mask)
    sets, expected = reference_output(layer, x, mask, causal)
    assert torch.equal(out.global_indices, sets)
    torch.testing.assert_close(out.hidden_states, expected, atol=1e-10, rtol=0)
    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((out.hidden_states * weights).sum(), params)
    for got, want in zip(grads, torch.autograd.grad((expected * weights).sum(), params)):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize(
    "causal, combine, pad, n",
    [
        (False, "union", "holes", 15), (True, "union", "holes", 21), (False, "gated", "none", 16),
        (True, "gated", "holes", 13), (False, "union", "none", 16), (True, "union", "none", 9),
        (False, "gated", "holes", 21),
    ],
)
def test_pooled_layer_and_gradient_equal_loop_reference(causal, combine, pad, n):
    layer = make_layer(causal, combine)
    params = [layer.pooled.pool_proj.weight, layer.pooled.gate_proj.weight, layer.k_proj.weight, layer.q_proj.weight]
    assert_layer_equals_reference(layer, n, pad, causal, params)


@pytest.mark.parametrize(
    "pinned, attend_all, combine, pad, n",
    [(1, True, "union", "holes", 15), (2, True, "union", "none", 16), (1, False, "gated", "holes", 21),
     (3, False, "union", "holes", 13)],
)
def test_pinned_tokens_are_in_every_set_and_read_every_token(pinned, attend_all, combine, pad, n):
    """pinned_global with selection="pooled" (Longformer's [CLS] recipe): the first positions lead every
    window's set, the pooled selection picks the other K - p, and with global_queries_attend_all the
    pinned queries attend to every real key; output and gradient against the float64 loop reference."""
    layer = make_layer(False, combine, pinned=pinned, attend_all=attend_all)
    params = [layer.pooled.pool_proj.weight, layer.q_proj.weight, layer.k_proj.weight, layer.v_proj.weight]
    assert_layer_equals_reference(layer, n, pad, False, params)


@pytest.mark.parametrize("causal", [False, True])
def test_selection_a_pool_block_at_a_time_equals_loop_reference(causal, monkeypatch):
    """select_keys computes its logits a chunk of pool blocks at a time (``CHUNK_ELEMENTS``, one chunk at
    these sizes); with chunks of one block the sets, output and gradient still equal the reference."""
    monkeypatch.setattr(pooled_module, "CHUNK_ELEMENTS", 1)
    layer = make_layer(causal)
    assert_layer_equals_reference(layer, 21, "holes", causal, [layer.q_proj.weight, layer.k_proj.weight])


def test_topk_positions_breaks_ties_by_position():
    rows = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0], [9.0, 1.0, 9.0, 1.0, 9.0], [0.5, 0.5, 0.5, 0.5, 0.5]])
    eligible = torch.tensor([[True] * 5, [False, True, False, True, False], [True] * 5])
    assert topk_positions(rows, eligible, 2).tolist() == [[1, 2], [1, 3], [0, 1]]
    assert topk_positions(rows, eligible, 3).tolist() == [[1, 2, 4], [1, 3, -1], [0, 1, 2]]
    assert topk_positions(rows, eligible, 7).tolist() == [
        [0, 1, 2, 3, 4, -1, -1], [1, 3, -1, -1, -1, -1, -1], [0, 1, 2, 3, 4, -1, -1]
    ]
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (50, 30), generator=generator).float() * 1e-3
    scores[:, 7] = 1e-40  # a subnormal still ranks above zero
    eligible = torch.rand(50, 30, generator=generator) > 0.2
    for row, ok, got in zip(scores, eligible, topk_positions(scores, eligible, 6)):
        order = sorted((j for j in range(30) if ok[j]), key=lambda j: (-row[j].item(), j))[:6]
        assert got.tolist() == sorted(order) + [-1] * (6 - len(order))


def test_causal_pooled_output_ignores_future_tokens():
    layer = make_layer(causal=True)
    x = torch.randn(2, 29, D_MODEL, dtype=torch.float64)
    t = 17
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
    a, b = layer(x), layer(changed)
    torch.testing.assert_close(a.hidden_states[:, : t + 1], b.hidden_states[:, : t + 1], atol=1e-12, rtol=0)
    assert torch.equal(a.global_indices[:, : t // WINDOW + 1], b.global_indices[:, : t // WINDOW + 1])


@pytest.mark.parametrize("combine, local", [("union", "block"), ("union", "sliding"), ("gated", "block"), ("gated", "sliding")])
def test_pooled_decoding_equals_the_full_causal_forward(combine, local):
    layer = make_layer(causal=True, combine=combine, local=local)
    x = torch.randn(2, 27, D_MODEL, dtype=torch.float64)
    mask = padding(2, 27, "holes")
    with torch.no_grad():
        full = layer(x, mask)
        cache = KVCache()
        steps = [layer(x[:, t : t + 1], mask[:, t : t + 1], cache=cache) for t in range(27)]
        prefill = KVCache()
        parts = [layer(x[:, :10], mask[:, :10], cache=prefill), layer(x[:, 10:], mask[:, 10:], cache=prefill)]
    torch.testing.assert_close(torch.cat([s.hidden_states for s in steps], 1), full.hidden_states, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.cat([p.hidden_states for p in parts], 1), full.hidden_states, atol=1e-12, rtol=0)
    for t, step in enumerate(steps):  # the set in force at step t is the full forward's set of t's block
        assert torch.equal(step.global_indices[:, 0], full.global_indices[:, t // WINDOW])
    assert cache.length == 27 and cache.memory_bytes() > 0


def test_pooled_without_global_keys_keeps_the_branch():
    layer = make_layer(causal=False, global_k=0)
    x = torch.randn(2, 10, D_MODEL, dtype=torch.float64)
    out = layer(x)
    assert out.global_indices is None
    _, branch = reference_sets_and_branch(layer, x, None, causal=False)
    q, k, v = qkv(layer, x)
    gate = torch.sigmoid(layer.pooled.gate_proj(x)).transpose(1, 2)[..., None]
    main = reference_attention(q, k, v, dense_mask(2, 10, window=WINDOW))
    torch.testing.assert_close(out.hidden_states, layer.o_proj(merge(main + gate * branch)), atol=1e-10, rtol=0)


@pytest.mark.parametrize("attend_all", [False, True])
def test_pooled_within_one_window_is_dense_attention(attend_all):
    """Non-causal, N <= window: every query's window holds every key, so there is no far token; the
    layer is dense attention (float64 reference), in training too, and the branch gets no gradient."""
    layer = make_layer(causal=False, pinned=1 if attend_all else 0, attend_all=attend_all).train()
    x = torch.randn(2, WINDOW, D_MODEL, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * WINDOW, [True] * (WINDOW - 1) + [False]])
    out = layer(x, key_padding_mask=mask)
    assert out.global_indices is None
    q, k, v = qkv(layer, x)
    expected = layer.o_proj(merge(reference_attention(q, k, v, dense_mask(2, WINDOW, window=WINDOW, key_padding_mask=mask))))
    real = mask[..., None]
    torch.testing.assert_close(out.hidden_states * real, expected * real, atol=1e-10, rtol=0)
    out.hidden_states[mask].sum().backward()
    assert all(p.grad is None for p in layer.pooled.parameters())
    longer = layer(torch.randn(2, WINDOW + 1, D_MODEL, dtype=torch.float64))  # one far key: the branch runs
    assert longer.global_indices is not None


def test_pooled_selection_refuses_bad_configurations():
    with pytest.raises(ConfigError, match="pinned_global"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, selection="pooled", global_k=4, pinned_global=1, causal=True)
    with pytest.raises(ConfigError, match="global_queries_attend_all.*pinned_global >= 1 and combine='union'"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, selection="pooled", global_queries_attend_all=True)
    with pytest.raises(ConfigError, match="global_queries_attend_all.*got pinned_global=1, combine='gated'"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, selection="pooled", global_queries_attend_all=True,
                        pinned_global=1, combine="gated")
    with pytest.raises(ConfigError, match="selection.*'pooled'"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, selection="pool")
    with pytest.raises(ConfigError, match="pool_block.*multiple of window=64"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, window=64, selection="pooled", pool_block=96)
    with pytest.raises(ConfigError, match="pool_block.*>= 0"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, selection="pooled", pool_block=-1)
    assert AttentionConfig(window=96, selection="pooled").pooled_block == 288  # automatic: >= 256


def test_pooled_selection_finds_a_planted_far_token(one_thread):  # noqa: F811
    accuracy, found = retrieval_accuracy(global_k=2, selection="pooled", pool_block=8, with_recall=True)
    assert found >= 0.9  # the marked token is in query block 0's set
    assert accuracy >= 0.9


def test_pooled_selection_starts_on_the_rare_tokens():
    """At initialisation (no training), the sets hold the few rare tokens planted among many repeats of
    a handful of common ones (as fillers repeat in a sequence): the pooled query's key term (−k̄ · k_j)
    ranks first the keys least like the block's own. Counted over 20 random layers and inputs (d_model
    64, 4 heads; a rare token in a window's own pool block is part of that block, so not counted there):
    the key term's sets hold 67% of them, the mean query's alone 23% (chance: 5%)."""
    d_model, heads, n, rare = 64, 4, 64, [5, 22, 41]
    held = held_without_keys = total = 0
    for seed in range(20):
        torch.manual_seed(seed)
        config = AttentionConfig(d_model=d_model, n_heads=heads, window=WINDOW, global_k=K, selection="pooled", pool_block=POOL)
        layer = HybridAttention(config).double().eval()
        generator = torch.Generator().manual_seed(100 + seed)
        common = torch.randn(4, d_model, generator=generator, dtype=torch.float64)
        x = common[torch.randint(0, 4, (2, n), generator=generator)]  # (B, N, d_model)
        x[:, rare] = torch.randn(2, len(rare), d_model, generator=generator, dtype=torch.float64)
        x = torch.nn.functional.layer_norm(x, (d_model,))
        with torch.no_grad():
            sets = layer(x).global_indices  # (B, N / WINDOW, K)
            q, k = (proj(x).view(2, n, heads, -1).transpose(1, 2) for proj in (layer.q_proj, layer.k_proj))  # (B, H, N, D)
            pooled = pool_queries(q, layer.pooled.pool_proj(x), POOL, None)  # the mean query alone
            without_keys = select_keys(pooled, k, None, layer.scale, K, window=WINDOW, block=POOL, exclude_own=True)
        for window in range(n // WINDOW):
            expected = {j for j in rare if j // POOL != window * WINDOW // POOL}
            for b in range(2):
                total += len(expected)
                held += len(expected & set(sets[b, window].tolist()))
                held_without_keys += len(expected & set(without_keys[b, window].tolist()))
    assert held / total >= 0.6 and held_without_keys / total <= 0.3


def test_meta_device_build_then_init_equals_an_eager_build():
    config = AttentionConfig(d_model=D_MODEL, n_heads=HEADS, window=WINDOW, global_k=K, selection="pooled", pool_block=POOL)
    torch.manual_seed(3)
    eager = HybridAttention(config)
    with torch.device("meta"):
        meta = HybridAttention(config)
    meta.to_empty(device="cpu")
    torch.manual_seed(3)
    meta.init_weights()
    for (name, a), (_, b) in zip(eager.state_dict().items(), meta.state_dict().items()):
        assert torch.equal(a, b), name


def test_decoding_state_appends_into_doubling_buffers():
    """Appending a token copies the history only when the buffer doubles (O(1) amortised per token),
    and the views hold exactly the appended keys, values and flags."""
    from hybridformer.attention.pooled_cache import _start

    q = torch.zeros(2, HEADS, 1, HEAD_DIM)
    state = _start(q, K)
    keys, values, flags, capacities = [], [], [], set()
    for t in range(150):
        k, v = torch.randn(2, HEADS, 1, HEAD_DIM), torch.randn(2, HEADS, 1, HEAD_DIM)
        valid = torch.tensor([[True], [t % 3 != 0]])
        state.append(k, v, valid)
        keys.append(k), values.append(v), flags.append(valid)
        capacities.add(state.key_buffer.shape[2])
    assert sorted(capacities) == [64, 128, 256]
    assert torch.equal(state.keys, torch.cat(keys, 2)) and torch.equal(state.values, torch.cat(values, 2))
    assert torch.equal(state.valid, torch.cat(flags, 1)) and state.length == 150
