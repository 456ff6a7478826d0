"""TransformerBlock: post-LN and pre-LN wiring against a hand-written float64 reference, padding, outputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hybridformer.attention import AttentionConfig
from hybridformer.blocks import BlockConfig, TransformerBlock
from hybridformer.config import ConfigError
from hybridformer.sparsity import SparsityConfig

D, H, FF = 16, 4, 40


def make_block(norm: str, kind: str = "full") -> TransformerBlock:
    torch.manual_seed(0)
    attention = AttentionConfig(d_model=D, n_heads=H, kind=kind, window=4, global_k=2, dropout=0.0)
    block = TransformerBlock(BlockConfig(d_model=D, d_ff=FF, norm=norm, dropout=0.0, attention=attention))
    with torch.no_grad():  # non-trivial LayerNorm parameters so a swapped norm would show
        for norm_module in (block.attention_norm, block.ffn_norm):
            norm_module.weight.uniform_(0.5, 1.5)
            norm_module.bias.uniform_(-0.5, 0.5)
    return block.eval()


def reference(block: TransformerBlock, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The block's maths written out densely in float64: softmax attention over real keys, erf-GELU FFN."""
    p = {k: v.double() for k, v in block.state_dict().items()}
    x = x.double()

    def linear(t: torch.Tensor, name: str) -> torch.Tensor:
        return t @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    def norm(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(t, (D,), p[f"{name}.weight"], p[f"{name}.bias"], eps=block.config.layer_norm_eps)

    def attention(t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        q, k, v = (linear(t, f"attention.{c}_proj").view(b, n, H, D // H).transpose(1, 2) for c in "qkv")
        logits = q @ k.transpose(-1, -2) / math.sqrt(D // H)  # (B, H, N, N)
        logits = logits.masked_fill(~real[:, None, None, :], float("-inf"))
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, D)
        return linear(out, "attention.o_proj")

    def ffn(t: torch.Tensor) -> torch.Tensor:
        h = linear(t, "ffn.fc_in")
        return linear(0.5 * h * (1 + torch.erf(h / math.sqrt(2))), "ffn.fc_out")

    if block.config.norm == "post":
        x = norm(x + attention(x), "attention_norm")
        return norm(x + ffn(x), "ffn_norm")
    x = x + attention(norm(x, "attention_norm"))
    return x + ffn(norm(x, "ffn_norm"))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_block_matches_float64_reference_with_padding(norm: str) -> None:
    block = make_block(norm)
    x = torch.randn(2, 7, D)
    real = torch.ones(2, 7, dtype=torch.bool)
    real[1, 4:] = False
    with torch.no_grad():
        out = block(x, key_padding_mask=real)
    expected = reference(block, x, real)
    assert out.hidden_states.shape == (2, 7, D)
    assert (out.hidden_states.double() - expected)[real].abs().max() <= 1e-5
    assert out.global_indices is None and out.gate_stats is None
    assert out.aux_loss.shape == () and float(out.aux_loss) == 0.0


def test_padded_keys_do_not_reach_real_tokens() -> None:
    block = make_block("post", kind="hybrid")
    x = torch.randn(1, 10, D)
    real = torch.ones(1, 10, dtype=torch.bool)
    real[0, 6:] = False
    changed = x.clone()
    changed[0, 6:] = torch.randn(4, D) * 10
    with torch.no_grad():
        a = block(x, key_padding_mask=real)
        b = block(changed, key_padding_mask=real)
    assert torch.allclose(a.hidden_states[0, :6], b.hidden_states[0, :6], atol=1e-6)
    assert a.global_indices.shape == (1, 3, 2) and int(a.global_indices.max()) < 6  # (1, windows, K): pooled sets


def test_block_config_rejects_mismatched_attention_width() -> None:
    with pytest.raises(ConfigError, match="attention.d_model: must equal the block's d_model=32, got 16"):
        BlockConfig(d_model=32, attention=AttentionConfig(d_model=16, n_heads=4))
    with pytest.raises(ConfigError, match="dropout: must be in"):
        BlockConfig(d_model=16, dropout=1.5, attention=AttentionConfig(d_model=16, n_heads=4))


def test_gated_ffn_aux_loss_and_stats_come_out_of_the_block() -> None:
    torch.manual_seed(0)
    attention = AttentionConfig(d_model=D, n_heads=H, kind="full", dropout=0.0)
    sparsity = SparsityConfig(enabled=True, n_groups=4, target_active=0.25)
    block = TransformerBlock(BlockConfig(d_model=D, d_ff=FF, dropout=0.0, attention=attention, sparsity=sparsity))
    x = torch.randn(2, 6, D)
    real = torch.ones(2, 6, dtype=torch.bool)
    real[0, 3:] = False
    out = block(x, key_padding_mask=real)
    # The block's FFN sublayer sees the post-LN attention output; its own call gives the same aux loss.
    attended = block.attention_norm(x + block.attention(x, key_padding_mask=real).hidden_states)
    expected = block.ffn(attended, key_padding_mask=real)
    assert out.aux_loss.requires_grad and out.aux_loss.item() > 0
    assert torch.allclose(out.aux_loss, expected.aux_loss)
    assert int(out.gate_stats.n_tokens) == 9  # padding is not counted
    out.aux_loss.backward()
    assert block.ffn.gate.groups.weight.grad.abs().sum() > 0
