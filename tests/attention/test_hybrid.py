"""HybridAttention against independent references.

kind="full" against Hugging Face's BertSelfAttention with the same weights; kind="hybrid" (union and
gated) against dense float64 masked attention built from the definition (`dense_mask` +
`reference_attention`, and a hand-built "selected keys only" mask for the gated global branch);
causality under perturbation of future tokens; bad input.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertSelfAttention

from hybridformer.attention import AttentionConfig, HybridAttention, KVCache, dense_mask, reference_attention
from hybridformer.config import ConfigError

D_MODEL, HEADS = 16, 2
HEAD_DIM = D_MODEL // HEADS


def make_layer(seed: int = 0, dtype: torch.dtype = torch.float64, **fields) -> HybridAttention:
    """A seeded layer in eval mode; a hybrid layer's scorer gets random weights (it starts at zero,
    where every score ties) so selection is non-trivial."""
    torch.manual_seed(seed)
    fields.setdefault("selection", "scorer")  # the scorer's kernel path (selection="pooled": test_pooled.py)
    layer = HybridAttention(AttentionConfig(d_model=D_MODEL, n_heads=HEADS, **fields))
    if layer.config.kind == "hybrid":
        nn.init.normal_(layer.scorer.net.weight)
    return layer.to(dtype).eval()


def heads(x: Tensor) -> Tensor:
    batch, n, _ = x.shape
    return x.view(batch, n, HEADS, HEAD_DIM).transpose(1, 2)  # (B, H, N, D)


def merge(x: Tensor) -> Tensor:
    batch, _, n, _ = x.shape
    return x.transpose(1, 2).reshape(batch, n, D_MODEL)  # (B, N, d)


def padding(batch: int, n: int, pattern: str) -> Tensor | None:
    """None, or a mask with left padding in sequence 1 and a hole in sequence 0."""
    if pattern == "none":
        return None
    mask = torch.ones(batch, n, dtype=torch.bool)
    mask[1, : min(3, n - 1)] = False
    if n > 1:
        mask[0, n // 2] = False
    return mask


def qkv(layer: HybridAttention, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return heads(layer.q_proj(x)), heads(layer.k_proj(x)), heads(layer.v_proj(x))


# (n, window, local, causal, global_k, padding, global_queries_attend_all)
UNION_CASES = [
    (1, 4, "block", False, 3, "none", False),
    (13, 4, "block", False, 3, "holes", False),
    (13, 4, "block", False, 3, "holes", True),
    (13, 4, "sliding", False, 3, "holes", True),
    (14, 5, "sliding", True, 2, "holes", False),
    (10, 4, "block", True, 20, "holes", False),  # K larger than the valid tokens
    (9, 3, "sliding", False, 20, "holes", False),
    (11, 4, "sliding", True, 0, "none", False),  # no global tokens at all
    # One block holds the whole sequence: inference takes the dense SDPA fast path.
    (7, 8, "block", False, 3, "holes", True),
    (8, 8, "block", True, 2, "holes", False),
]


@pytest.mark.parametrize("n, window, local, causal, k, pad, attend_all", UNION_CASES)
def test_union_equals_dense_masked_attention(n, window, local, causal, k, pad, attend_all):
    layer = make_layer(window=window, local=local, causal=causal, global_k=k, global_queries_attend_all=attend_all)
    x = torch.randn(2, n, D_MODEL, dtype=torch.float64)
    mask = padding(2, n, pad)
    out = layer(x, mask)  # grad enabled: exercises the straight-through bias folded into the kernel
    indices = out.global_indices
    if k == 0:
        assert indices is None
    else:
        assert indices.shape == ((2, -(-n // window), k) if causal else (2, k))
        if mask is not None:  # padding is never selected
            chosen = indices.clamp(min=0)
            assert bool((mask.gather(1, chosen.flatten(1)) | (indices.flatten(1) < 0)).all())
    sees = dense_mask(
        2, n, window=window, local=local, global_indices=indices, causal=causal, key_padding_mask=mask,
        global_queries_attend_all=attend_all,
    )
    expected = layer.o_proj(merge(reference_attention(*qkv(layer, x), sees)))
    torch.testing.assert_close(out.hidden_states, expected, atol=1e-10, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, mask).hidden_states, expected, atol=1e-10, rtol=0)


def test_union_float32_and_bfloat16_match_float64_reference():
    layer64 = make_layer(window=4, local="sliding", global_k=3)
    x = torch.randn(2, 12, D_MODEL, dtype=torch.float64)
    expected = layer64(x).hidden_states
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 6e-2)):
        layer = make_layer(dtype=dtype, window=4, local="sliding", global_k=3)
        out = layer(x.to(dtype))
        assert out.hidden_states.dtype == dtype
        torch.testing.assert_close(out.hidden_states.double(), expected, atol=tol, rtol=0)


def selected_keys_mask(indices: Tensor, n: int, window: int, mask: Tensor | None, attend_all: bool) -> Tensor:
    """Bool (B, N, N), built entry by entry: query i sees exactly the members of its set."""
    batch = indices.shape[0]
    sees = torch.zeros(batch, n, n, dtype=torch.bool)
    for b in range(batch):
        for i in range(n):
            members = indices[b, i // window] if indices.dim() == 3 else indices[b]
            for j in members.tolist():
                if j >= 0:
                    sees[b, i, j] = True
        if attend_all:
            for i in indices[b].tolist():
                if i >= 0:
                    sees[b, i] = True if mask is None else mask[b]
    return sees


# (n, window, local, causal, global_k, padding, global_queries_attend_all)
GATED_CASES = [
    (13, 4, "block", False, 3, "holes", False),
    (13, 4, "sliding", False, 3, "holes", True),
    (14, 5, "sliding", True, 2, "holes", False),
    (10, 4, "block", True, 20, "holes", False),
]


@pytest.mark.parametrize("n, window, local, causal, k, pad, attend_all", GATED_CASES)
def test_gated_equals_gated_dense_branches(n, window, local, causal, k, pad, attend_all):
    layer = make_layer(
        window=window, local=local, causal=causal, global_k=k, combine="gated", global_queries_attend_all=attend_all
    )
    x = torch.randn(2, n, D_MODEL, dtype=torch.float64)
    mask = padding(2, n, pad)
    out = layer(x, mask)
    q, keys, values = qkv(layer, x)
    near = reference_attention(
        q, keys, values, dense_mask(2, n, window=window, local=local, causal=causal, key_padding_mask=mask)
    )
    far = reference_attention(q, keys, values, selected_keys_mask(out.global_indices, n, window, mask, attend_all))
    gates = torch.sigmoid(layer.gate_proj(x)).view(2, n, HEADS, 2).transpose(1, 2)  # (B, H, N, 2)
    expected = layer.o_proj(merge(gates[..., :1] * near + gates[..., 1:] * far))
    torch.testing.assert_close(out.hidden_states, expected, atol=1e-10, rtol=0)


def test_full_reproduces_bert_self_attention():
    torch.manual_seed(0)
    bert_config = BertConfig(hidden_size=D_MODEL, num_attention_heads=HEADS, attention_probs_dropout_prob=0.0)
    bert_config._attn_implementation = "eager"
    bert = BertSelfAttention(bert_config).eval()
    layer = HybridAttention(AttentionConfig(d_model=D_MODEL, n_heads=HEADS, kind="full")).eval()
    for ours, theirs in ((layer.q_proj, bert.query), (layer.k_proj, bert.key), (layer.v_proj, bert.value)):
        ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 9, D_MODEL)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    additive = torch.zeros(2, 1, 1, 9).masked_fill(~mask[:, None, None, :], torch.finfo(torch.float32).min)
    expected = layer.o_proj(bert(x, attention_mask=additive)[0])
    out = layer(x, mask)
    assert out.global_indices is None and out.scores is None
    torch.testing.assert_close(out.hidden_states[mask], expected[mask], atol=1e-6, rtol=0)


def test_full_causal_with_left_padding_equals_reference():
    layer = make_layer(kind="full", causal=True)
    x = torch.randn(2, 7, D_MODEL, dtype=torch.float64)
    mask = padding(2, 7, "holes")
    sees = dense_mask(2, 7, window=7, causal=True, key_padding_mask=mask)
    expected = layer.o_proj(merge(reference_attention(*qkv(layer, x), sees)))
    torch.testing.assert_close(layer(x, mask).hidden_states, expected, atol=1e-10, rtol=0)


def test_full_dropout_only_in_training():
    layer = make_layer(kind="full", dropout=0.5)
    x = torch.randn(1, 6, D_MODEL, dtype=torch.float64)
    evaluated = layer(x).hidden_states
    torch.testing.assert_close(layer(x).hidden_states, evaluated)
    assert not torch.allclose(layer.train()(x).hidden_states, evaluated)


@pytest.mark.parametrize(
    "fields",
    [
        dict(kind="full"),
        dict(local="block", combine="union"),
        dict(local="sliding", combine="union"),
        dict(local="block", combine="gated"),
        dict(local="sliding", combine="gated"),
    ],
    ids=lambda f: "-".join(f.values()),
)
def test_causal_output_ignores_future_tokens(fields):
    window, n = 4, 19
    layer = make_layer(window=window, global_k=3, causal=True, **fields)
    x = torch.randn(2, n, D_MODEL, dtype=torch.float64)
    mask = padding(2, n, "holes")
    before = layer(x, mask)
    for t in (1, 5, 8, 13):
        changed = x.clone()
        changed[:, t:] = 3 * torch.randn(2, n - t, D_MODEL, dtype=torch.float64)
        after = layer(changed, mask)
        torch.testing.assert_close(after.hidden_states[:, :t], before.hidden_states[:, :t], atol=1e-12, rtol=0)
        assert not torch.allclose(after.hidden_states[:, t:], before.hidden_states[:, t:])
        if before.global_indices is not None:  # sets of blocks starting at or before t saw only tokens < t
            upto = t // window + 1
            assert torch.equal(after.global_indices[:, :upto], before.global_indices[:, :upto])


def test_bad_input_names_the_argument():
    layer = make_layer(window=4, global_k=2)
    with pytest.raises(ValueError, match=r"hidden_states.*d_model=16.*\(2, 5, 15\)"):
        layer(torch.randn(2, 5, 15, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"hidden_states.*\(5, 16\)"):
        layer(torch.randn(5, 16, dtype=torch.float64))
    x = torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"key_padding_mask.*\(2, 5\).*\(2, 6\)"):
        layer(x, torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask.*bool.*torch.float32"):
        layer(x, torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"cache.*causal"):
        layer(x, cache=KVCache())


def test_impossible_configurations_fail_at_construction():
    with pytest.raises(ConfigError, match="dropout"):
        HybridAttention(AttentionConfig(d_model=D_MODEL, n_heads=HEADS, kind="hybrid", dropout=0.1))
    with pytest.raises(ConfigError, match="global_queries_attend_all.*causal"):
        HybridAttention(AttentionConfig(d_model=D_MODEL, n_heads=HEADS, causal=True, global_queries_attend_all=True,
                                        selection="scorer"))


def test_module_layout_is_the_public_contract():
    layer = HybridAttention(AttentionConfig(d_model=D_MODEL, n_heads=HEADS, bias=False))
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        proj = getattr(layer, name)
        assert isinstance(proj, nn.Linear) and proj.weight.shape == (D_MODEL, D_MODEL) and proj.bias is None
    assert hasattr(layer, "pooled") and not hasattr(layer, "scorer")  # the default selection
    assert hasattr(HybridAttention(AttentionConfig(d_model=D_MODEL, n_heads=HEADS, selection="scorer")), "scorer")
    assert not hasattr(HybridAttention(AttentionConfig(d_model=D_MODEL, n_heads=HEADS, kind="full")), "scorer")
