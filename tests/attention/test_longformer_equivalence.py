"""HybridAttention (sliding window + symmetric global tokens) equals Hugging Face's Longformer.

Longformer's `attention_window` w is the total two-sided window: query i sees |i - j| <= w / 2, which
is our `local="sliding"` with `window = w`. Its global tokens attend to every key and are seen by
every query (our `global_queries_attend_all=True`), through separate `*_global` projections that we
set equal to the local ones. The global tokens are fixed by giving them a large value in one feature
that the scorer alone reads. Longformer's output is before its output dense layer, so we apply our
`o_proj` to it.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LongformerConfig
from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

from hybridformer.attention import AttentionConfig, HybridAttention

D_MODEL, HEADS, N = 16, 2, 32
GLOBAL = [[0, 5, 21], [0, 3, 17]]  # per sequence; sequence 1 is padded from position 24
MARK = 0  # the feature the scorer reads


def layers(window: int, global_k: int) -> tuple[HybridAttention, LongformerSelfAttention]:
    torch.manual_seed(0)
    config = LongformerConfig(
        hidden_size=D_MODEL, num_attention_heads=HEADS, attention_window=[window], attention_probs_dropout_prob=0.0
    )
    theirs = LongformerSelfAttention(config, layer_id=0).eval()
    theirs.query_global.load_state_dict(theirs.query.state_dict())
    theirs.key_global.load_state_dict(theirs.key.state_dict())
    theirs.value_global.load_state_dict(theirs.value.state_dict())
    ours = HybridAttention(
        AttentionConfig(
            d_model=D_MODEL, n_heads=HEADS, window=window, local="sliding", global_k=global_k, selection="scorer",
            global_queries_attend_all=True,
        )
    ).eval()
    for mine, hf in ((ours.q_proj, theirs.query), (ours.k_proj, theirs.key), (ours.v_proj, theirs.value)):
        mine.load_state_dict(hf.state_dict())
    with torch.no_grad():
        ours.scorer.net.weight.zero_()
        ours.scorer.net.weight[0, MARK] = 1.0
    return ours, theirs


@pytest.mark.parametrize("window", [4, 8])
@pytest.mark.parametrize("with_global", [True, False])
def test_equals_hf_longformer_self_attention(window, with_global):
    global_k = len(GLOBAL[0]) if with_global else 0
    ours, theirs = layers(window, global_k)
    torch.manual_seed(1)
    x = torch.randn(2, N, D_MODEL)
    real = torch.ones(2, N, dtype=torch.bool)
    real[1, 24:] = False
    is_global = torch.zeros(2, N, dtype=torch.bool)
    if with_global:
        for b, positions in enumerate(GLOBAL):
            x[b, positions, MARK] += 20.0
            is_global[b, positions] = True
    # Longformer's layer-level mask: -10000 padding, 0 local, +10000 global.
    hf_mask = torch.zeros(2, N).masked_fill(~real, -10000.0).masked_fill(is_global, 10000.0)
    with torch.no_grad():
        expected = ours.o_proj(
            theirs(
                x, attention_mask=hf_mask, is_index_masked=~real, is_index_global_attn=is_global,
                is_global_attn=with_global,
            )[0]
        )
        out = ours(x, real)
    if with_global:
        assert [sorted(row) for row in out.global_indices.tolist()] == GLOBAL
    # Longformer zeroes padding queries; ours lets them attend (only keys are masked): compare real ones.
    assert (out.hidden_states - expected)[real].abs().max() <= 1e-5
