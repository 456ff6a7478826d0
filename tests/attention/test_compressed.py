"""selection="compressed" (NSA compressed-block selection) against loop-built float64 references:
the block summaries, the per-block choice, the layer's output (kernel over the chosen sets + gated
compressed branch), causal prefix consistency, and a planted far token it learns to find."""

from __future__ import annotations

import math

import pytest
import torch

from hybridformer.attention import AttentionConfig, HybridAttention, KVCache, dense_mask, reference_attention
from hybridformer.attention.compressed import compress_blocks
from test_hybrid import D_MODEL, HEADS, HEAD_DIM, heads, merge, padding, qkv
from test_scorer import one_thread, retrieval_accuracy  # noqa: F401 (fixture)

WINDOW, BLOCK, K = 4, 2, 4


def make_layer(
    causal: bool, combine: str = "union", seed: int = 0, vote: str = "max", summary: str = "mean"
) -> HybridAttention:
    torch.manual_seed(seed)
    config = AttentionConfig(
        d_model=D_MODEL, n_heads=HEADS, window=WINDOW, global_k=K, selection="compressed",
        compress_block=BLOCK, causal=causal, combine=combine, compress_vote=vote, compress_summary=summary,
    )
    layer = HybridAttention(config).double().eval()
    torch.nn.init.normal_(layer.compressed.pool)  # learned pooling, not the initial mean
    return layer


def summaries(k, v, mask, b, h, c, n, pool=None, summary="mean"):
    """Key/value of block c pooled over its real tokens by softmax(pool_h·k_j) (loop; pool None: the
    mean), times the real-token count for summary="sum", or None if it has none."""
    real = [j for j in range(c * BLOCK, min(n, (c + 1) * BLOCK)) if mask is None or mask[b, j]]
    if not real:
        return None
    if pool is None:
        w = torch.full((len(real),), 1 / len(real), dtype=k.dtype)
    else:
        w = torch.softmax(torch.stack([pool[h] @ k[b, h, j] for j in real]), 0)
    if summary == "sum":
        w = w * len(real)
    return sum(w[m] * k[b, h, j] for m, j in enumerate(real)), sum(w[m] * v[b, h, j] for m, j in enumerate(real))


def reference_sets_and_branch(layer, x, mask, causal):
    """Loop-built per-block sets (top blocks by the compressed probabilities, max or sum over the
    block's queries per `layer.config.compress_vote`, summed over heads) and the compressed branch's
    output (before the gate), float64."""
    q, k, v = (t.detach() for t in qkv(layer, x))
    batch, n = x.shape[:2]
    n_blocks, groups = math.ceil(n / BLOCK), math.ceil(n / WINDOW)
    scale = HEAD_DIM**-0.5
    branch = torch.zeros_like(q)
    sets = torch.full((batch, groups, K), -1, dtype=torch.long)
    for b in range(batch):
        pool = layer.compressed.pool.detach()
        summ = {
            (h, c): summaries(k, v, mask, b, h, c, n, pool, layer.config.compress_summary)
            for h in range(HEADS) for c in range(n_blocks)
        }
        for h in range(HEADS):
            for i in range(n):
                seen = [c for c in range(n_blocks) if summ[h, c] is not None and (not causal or (c + 1) * BLOCK - 1 <= i)]
                if seen:
                    p = torch.softmax(torch.stack([q[b, h, i] @ summ[h, c][0] * scale for c in seen]), 0)
                    branch[b, h, i] = sum(p[m] * summ[h, c][1] for m, c in enumerate(seen))
        for g in range(groups):
            voters = range((g - 1) * WINDOW, g * WINDOW) if causal else range(g * WINDOW, (g + 1) * WINDOW)
            eligible = [
                c for c in range(n_blocks) if summ[0, c] is not None
                and ((c * BLOCK) // WINDOW < g if causal else (c * BLOCK) // WINDOW != g)
            ]
            if not eligible or g == 0 and causal:
                continue
            importance = torch.zeros(len(eligible), dtype=torch.float64)
            for h in range(HEADS):
                head = torch.zeros(len(eligible), dtype=torch.float64)
                for i in voters:
                    if i < n and (mask is None or mask[b, i]):
                        p = torch.softmax(torch.stack([q[b, h, i] @ summ[h, c][0] * scale for c in eligible]), 0)
                        head = head + p if layer.config.compress_vote == "sum" else torch.maximum(head, p)
                importance += head
            order = sorted(range(len(eligible)), key=lambda m: (-importance[m].item(), eligible[m]))
            tokens = [j for m in order[: K // BLOCK] for j in range(eligible[m] * BLOCK, (eligible[m] + 1) * BLOCK)]
            tokens = [j if j < n and (mask is None or mask[b, j]) else -1 for j in tokens]
            sets[b, g, : len(tokens)] = torch.tensor(tokens)
    return sets, branch


def test_compress_blocks_are_means_or_sums_over_real_tokens():
    k, v = torch.randn(2, HEADS, 7, HEAD_DIM, dtype=torch.float64), torch.randn(2, HEADS, 7, HEAD_DIM, dtype=torch.float64)
    mask = padding(2, 7, "holes")
    mask[0, 4:6] = False  # block 2 of sequence 0 is all padding
    pool = torch.randn(HEADS, HEAD_DIM, dtype=torch.float64)
    for weights, summary in ((None, "mean"), (pool, "mean"), (None, "sum"), (pool, "sum")):  # None: pool = 0
        k_c, v_c, real = compress_blocks(k, v, BLOCK, mask, weights, summary)
        for b in range(2):
            for h in range(HEADS):
                for c in range(4):
                    expected = summaries(k, v, mask, b, h, c, 7, weights, summary)
                    assert bool(real[b, c]) == (expected is not None)
                    if expected is not None:
                        torch.testing.assert_close(k_c[b, h, c], expected[0])
                        torch.testing.assert_close(v_c[b, h, c], expected[1])


@pytest.mark.parametrize(
    "causal, combine, pad, vote",
    [(False, "union", "holes", "max"), (True, "union", "holes", "max"), (True, "gated", "none", "max"),
     (False, "union", "holes", "sum"), (True, "union", "holes", "sum")],
)
@pytest.mark.parametrize("summary", ["mean", "sum"])
def test_compressed_layer_equals_loop_reference(causal, combine, pad, vote, summary):
    layer = make_layer(causal, combine, vote=vote, summary=summary)
    x = torch.randn(2, 15, D_MODEL, dtype=torch.float64)
    mask = padding(2, 15, pad)
    out = layer(x, mask)
    sets, branch = reference_sets_and_branch(layer, x, mask, causal)
    assert torch.equal(out.global_indices, sets)
    gate = torch.sigmoid(layer.compressed.gate_proj(x)).transpose(1, 2)[..., None]  # (B, H, N, 1)
    q, k, v = qkv(layer, x)
    if combine == "union":
        sees = dense_mask(2, 15, window=WINDOW, global_indices=sets, causal=causal, key_padding_mask=mask)
        main = reference_attention(q, k, v, sees)
    else:  # per-head gates of a local-only branch and a selected-only branch
        g = torch.sigmoid(layer.gate_proj(x)).view(2, 15, HEADS, 2).transpose(1, 2)
        local = reference_attention(q, k, v, dense_mask(2, 15, window=WINDOW, causal=causal, key_padding_mask=mask))
        only = torch.zeros(2, 15, 15, dtype=torch.bool)  # query i sees just its block's set
        for b in range(2):
            for i in range(15):
                only[b, i, [j for j in sets[b, i // WINDOW].tolist() if j >= 0]] = True
        chosen = reference_attention(q, k, v, only) * only.any(-1)[:, None, :, None]  # empty set: zeros
        main = g[..., :1] * local + g[..., 1:] * chosen
    expected = layer.o_proj(merge(main + gate * branch))
    torch.testing.assert_close(out.hidden_states, expected, atol=1e-10, rtol=0)


def test_causal_compressed_output_ignores_future_tokens():
    layer = make_layer(causal=True)
    x = torch.randn(2, 21, D_MODEL, dtype=torch.float64)
    t = 9
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
    a, b = layer(x), layer(changed)
    torch.testing.assert_close(a.hidden_states[:, : t + 1], b.hidden_states[:, : t + 1], atol=1e-12, rtol=0)
    assert torch.equal(a.global_indices[:, : t // WINDOW + 1], b.global_indices[:, : t // WINDOW + 1])


@pytest.mark.parametrize(
    "combine, local, vote", [("union", "block", "max"), ("union", "sliding", "max"), ("gated", "block", "max"), ("union", "block", "sum")]
)
@pytest.mark.parametrize("summary", ["mean", "sum"])
def test_compressed_decoding_equals_the_full_causal_forward(combine, local, vote, summary):
    layer = make_layer(causal=True, combine=combine, vote=vote, summary=summary)
    layer.config.local = local
    x = torch.randn(2, 19, D_MODEL, dtype=torch.float64)
    mask = padding(2, 19, "holes")
    with torch.no_grad():
        full = layer(x, mask)
        cache = KVCache()
        steps = [layer(x[:, t : t + 1], mask[:, t : t + 1], cache=cache) for t in range(19)]
        prefill = KVCache()
        parts = [layer(x[:, :10], mask[:, :10], cache=prefill), layer(x[:, 10:], mask[:, 10:], cache=prefill)]
    torch.testing.assert_close(torch.cat([s.hidden_states for s in steps], 1), full.hidden_states, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.cat([p.hidden_states for p in parts], 1), full.hidden_states, atol=1e-12, rtol=0)
    for t, step in enumerate(steps):  # the set in force at step t is the full forward's set of t's block
        assert torch.equal(step.global_indices[:, 0], full.global_indices[:, t // WINDOW])


def test_compressed_selection_refuses_bad_sizes():
    with pytest.raises(ValueError, match="compress_block.*divide window"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, window=6, global_k=4, selection="compressed", compress_block=4)
    with pytest.raises(ValueError, match="global_k.*multiple"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, window=4, global_k=3, selection="compressed", compress_block=2)
    with pytest.raises(ValueError, match="compress_vote"):
        AttentionConfig(d_model=D_MODEL, n_heads=HEADS, selection="compressed", compress_vote="mean")


def test_compressed_selection_finds_a_planted_far_token(one_thread):  # noqa: F811
    accuracy, found = retrieval_accuracy(global_k=2, selection="compressed", compress_block=2, with_recall=True)
    assert found >= 0.9  # the marked token is in query block 0's set
    assert accuracy >= 0.9


def test_meta_device_build_then_init_equals_an_eager_build():
    config = AttentionConfig(d_model=D_MODEL, n_heads=HEADS, window=WINDOW, global_k=K, selection="compressed", compress_block=BLOCK)
    torch.manual_seed(3)
    eager = HybridAttention(config)
    with torch.device("meta"):
        meta = HybridAttention(config)
    meta.to_empty(device="cpu")
    torch.manual_seed(3)
    meta.init_weights()
    for (name, a), (_, b) in zip(eager.state_dict().items(), meta.state_dict().items()):
        assert torch.equal(a, b), name
