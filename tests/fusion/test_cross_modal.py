"""Gated cross-modal attention: zero at init, per-example masks, and a float64 reference."""

from __future__ import annotations

import math

import pytest
import torch

from hybridformer.fusion import CrossModalAttention, CrossModalConfig, JointDecoder, ModalityTokens
from tiny_decoders import DIMS, mixed_context, tiny_decoder, tiny_decoder_config


def test_at_init_the_text_path_equals_the_text_only_decoder_exactly():
    torch.manual_seed(0)
    fused = JointDecoder(tiny_decoder_config()).eval()
    text_only = JointDecoder(tiny_decoder_config(dims={})).eval()
    result = text_only.load_state_dict(fused.state_dict(), strict=False)
    assert not result.missing_keys
    assert result.unexpected_keys and all(".cross_attention" in k for k in result.unexpected_keys)
    ids = torch.randint(0, 40, (3, 9))
    with torch.no_grad():
        expected = text_only(ids).logits
        got = fused(ids, kv=fused.cross_kv(mixed_context())).logits
    assert torch.equal(got, expected)


def test_an_open_gate_changes_only_examples_with_context():
    decoder = tiny_decoder(gate=0.7)
    ids = torch.randint(0, 40, (3, 9))
    with torch.no_grad():
        plain = decoder(ids).logits
        fused = decoder(ids, kv=decoder.cross_kv(mixed_context())).logits
    assert torch.equal(fused[0], plain[0])  # example 0 has no context: exactly unchanged
    assert (fused[1:] - plain[1:]).abs().max() > 1e-3


def test_a_mixed_batch_equals_each_example_run_alone():
    decoder = tiny_decoder(gate=0.7)
    ids = torch.randint(0, 40, (3, 9))
    context = mixed_context()
    with torch.no_grad():
        batched = decoder(ids, kv=decoder.cross_kv(context)).logits
        for i in range(3):
            alone = {
                name: ModalityTokens(part.tokens[i : i + 1, part.mask[i]], part.mask[i : i + 1, part.mask[i]])
                for name, part in context.items()
                if part.mask[i].any()
            }
            single = decoder(ids[i : i + 1], kv=decoder.cross_kv(alone)).logits
            torch.testing.assert_close(batched[i : i + 1], single, atol=1e-6, rtol=1e-5)


def _reference(layer: CrossModalAttention, hidden: torch.Tensor, context: dict[str, ModalityTokens]) -> torch.Tensor:
    """Gated cross-attention written out with loops over examples and heads, in float64."""
    p = {k: v.double() for k, v in layer.state_dict().items()}
    heads = layer.config.n_heads
    out = torch.zeros_like(hidden)
    for b in range(hidden.shape[0]):
        keys, values = [], []
        for name in ("text", "image", "video"):
            if name not in context:
                continue
            tokens = context[name].tokens[b][context[name].mask[b]] + p[f"type_embeddings.{name}"]
            keys.append(tokens @ p[f"k_proj.{name}.weight"].T + p[f"k_proj.{name}.bias"])
            values.append(tokens @ p[f"v_proj.{name}.weight"].T + p[f"v_proj.{name}.bias"])
        k, v = torch.cat(keys), torch.cat(values)
        if k.shape[0] == 0:
            continue
        q = hidden[b] @ p["q_proj.weight"].T + p["q_proj.bias"]
        dim = q.shape[1] // heads
        merged = []
        for h in range(heads):
            cols = slice(h * dim, (h + 1) * dim)
            weights = torch.softmax(q[:, cols] @ k[:, cols].T / math.sqrt(dim), dim=-1)
            merged.append(weights @ v[:, cols])
        attended = torch.cat(merged, dim=1) @ p["o_proj.weight"].T + p["o_proj.bias"]
        out[b] = math.tanh(float(p["gate"])) * attended
    return out


def test_fused_attention_equals_a_float64_dense_reference():
    torch.manual_seed(0)
    layer = CrossModalAttention(CrossModalConfig(d_model=32, n_heads=4, text_dim=24, image_dim=16, video_dim=20))
    torch.nn.init.constant_(layer.gate, 0.9)
    layer = layer.double()
    context = {k: ModalityTokens(v.tokens.double(), v.mask) for k, v in mixed_context().items()}
    hidden = torch.randn(3, 7, 32, dtype=torch.float64)
    got = layer(hidden, layer.project(context))
    torch.testing.assert_close(got, _reference(layer, hidden, context), atol=1e-12, rtol=1e-10)
    assert torch.equal(got[0], torch.zeros_like(got[0]))


def test_the_gate_starts_at_zero_and_learns():
    layer = CrossModalAttention(CrossModalConfig(d_model=32, n_heads=4, image_dim=16))
    assert float(layer.gate.detach()) == 0.0
    context = {"image": ModalityTokens(torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.bool))}
    out = layer(torch.randn(2, 5, 32), layer.project(context))
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()  # d out / d gate = o_proj(attention) != 0, so the gate opens in training
    assert float(layer.gate.grad.abs()) > 0


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"audio": ModalityTokens(torch.randn(1, 2, 16), torch.ones(1, 2, dtype=torch.bool))}, "audio"),
        ({"image": ModalityTokens(torch.randn(1, 2, 8), torch.ones(1, 2, dtype=torch.bool))}, r"context\['image'\]"),
        ({"image": ModalityTokens(torch.randn(1, 2, 16), torch.ones(1, 2))}, "mask"),
    ],
)
def test_bad_context_names_the_modality(context, message):
    layer = CrossModalAttention(CrossModalConfig(d_model=32, n_heads=4, text_dim=DIMS["text"], image_dim=16))
    with pytest.raises(ValueError, match=message):
        layer.project(context)
