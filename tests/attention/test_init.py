"""init_weights: attention modules built on the meta device initialise exactly like eager ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hybridformer.attention import AttentionConfig, HybridAttention
from hybridformer.attention.scorer import TokenScorer

BUILDERS = {
    "full": lambda: HybridAttention(AttentionConfig(selection="scorer", d_model=16, n_heads=2, kind="full")),
    "union": lambda: HybridAttention(AttentionConfig(selection="scorer", d_model=16, n_heads=2, scorer_hidden=8)),
    "gated": lambda: HybridAttention(AttentionConfig(selection="scorer", d_model=16, n_heads=2, combine="gated")),
    "scorer-linear": lambda: TokenScorer(16),
    "scorer-mlp": lambda: TokenScorer(16, hidden=8),
}


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("name", BUILDERS)
def test_meta_build_then_init_weights_equals_eager_build(name):
    build = BUILDERS[name]
    with torch.device("meta"):
        meta = build()
    assert all(p.is_meta for p in meta.parameters())
    meta.to_empty(device="cpu")
    torch.manual_seed(3)
    meta.init_weights()

    torch.manual_seed(3)
    eager = build()  # the constructor allocates without drawing, then runs init_weights
    _assert_same(_state(meta), _state(eager))

    with torch.no_grad():  # whatever the parameters hold, init_weights overwrites every one
        for p in eager.parameters():
            p.fill_(7.0)
    torch.manual_seed(3)
    eager.init_weights()
    _assert_same(_state(meta), _state(eager))


def test_init_weights_keeps_the_distributions():
    torch.manual_seed(0)
    layer = HybridAttention(AttentionConfig(selection="scorer", d_model=64, n_heads=4, combine="gated", scorer_hidden=32))
    layer.init_weights()
    bound = 64**-0.5  # nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
    for proj in (layer.q_proj, layer.k_proj, layer.v_proj, layer.o_proj, layer.gate_proj, layer.scorer.net[0]):
        assert proj.weight.abs().max() <= bound and proj.weight.std() > 0.4 * bound
        assert proj.bias.abs().max() <= bound
    assert not layer.scorer.out.weight.any() and not layer.scorer.out.bias.any()  # scores start equal
