"""full_width: every gated FFN is the dense FFN inside the block, with gradients; the gates come back."""

import pytest
import torch

from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.sparsity import GatedFFN, SparsityConfig, full_width


def _ffn() -> GatedFFN:
    torch.manual_seed(0)
    return GatedFFN(8, 32, SparsityConfig(enabled=True, n_groups=4, target_active=0.25)).train()


def test_inside_the_block_the_gated_ffn_is_dense_and_trains() -> None:
    ffn = _ffn()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    ffn.double()
    dense = ffn.fc_out(torch.nn.functional.gelu(ffn.fc_in(x)))
    gated = ffn(x).hidden_states
    assert not torch.allclose(gated, dense)  # a quarter of the groups open: clearly not dense
    gate = ffn.gate
    with full_width(ffn):
        out = ffn(x)
        assert ffn.gate is None
    assert ffn.gate is gate
    torch.testing.assert_close(out.hidden_states, dense, rtol=0, atol=0)
    assert out.aux_loss.item() == 0 and out.stats is None
    out.hidden_states.sum().backward()
    assert ffn.fc_in.weight.grad.abs().sum() > 0 and gate.groups.weight.grad is None


def test_gates_come_back_after_an_exception() -> None:
    ffn = _ffn()
    gate = ffn.gate
    with pytest.raises(RuntimeError, match="boom"):
        with full_width(ffn):
            raise RuntimeError("boom")
    assert ffn.gate is gate


def test_whole_encoder_at_full_width_equals_the_same_weights_without_gates() -> None:
    torch.manual_seed(0)
    common = dict(vocab_size=40, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_positions=12, dropout=0.0)
    gated = TextEncoder(TextEncoderConfig(**common, sparsity=SparsityConfig(enabled=True, n_groups=4))).train()
    dense = TextEncoder(TextEncoderConfig(**common)).train()
    dense.load_state_dict({k: v for k, v in gated.state_dict().items() if ".gate." not in k and "kept_groups" not in k})
    ids = torch.randint(1, 40, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[0, 9:] = 0
    with full_width(gated):
        out = gated(ids, attention_mask=mask)
    want = dense(ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(out.last_hidden_state[real], want.last_hidden_state[real])
