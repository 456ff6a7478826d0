"""HybridAttention without host syncs: torch.compile traces it whole and matches eager.

The fast tests compile with the `aot_eager` backend and `fullgraph=True` (any graph break, e.g. a
`.item()`, `nonzero()` or a data-dependent branch in the forward, fails them) and ask
`torch._dynamo.explain` for graph breaks in training (the blocked kernel's autograd.Function and
its backward are traced too); the slow one runs the default Inductor backend.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hybridformer.attention import AttentionConfig, HybridAttention

KINDS = [
    dict(kind="full"),
    dict(kind="hybrid", combine="union"),
    dict(kind="hybrid", combine="gated"),
    dict(kind="hybrid", combine="union", local="sliding", global_queries_attend_all=True),
    dict(kind="hybrid", combine="gated", causal=True),
]


def make_layer(fields: dict) -> HybridAttention:
    torch.manual_seed(0)
    layer = HybridAttention(AttentionConfig(selection="scorer", d_model=16, n_heads=2, window=4, global_k=3, **fields))
    if layer.config.kind == "hybrid":
        nn.init.normal_(layer.scorer.net.weight)  # non-trivial selection
    return layer.eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """N = 12 > window: the hybrid kinds run the blocked kernel; sequence 1 is left-padded."""
    x = torch.randn(2, 12, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, :3] = False
    return x, mask


def _name(fields: dict) -> str:
    return "-".join(str(v) for v in fields.values())


@pytest.mark.parametrize("fields", KINDS, ids=_name)
def test_fullgraph_compile_equals_eager(fields):
    layer = make_layer(fields)
    x, mask = inputs()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        got, want = compiled(x, mask), layer(x, mask)
    torch.testing.assert_close(got.hidden_states, want.hidden_states, atol=1e-5, rtol=1e-5)
    if want.global_indices is not None:
        assert torch.equal(got.global_indices, want.global_indices)


@pytest.mark.parametrize("fields", KINDS[:3], ids=_name)
def test_no_graph_breaks_in_training(fields):
    # Gradients on: the blocked kernel goes through its autograd.Function, whose backward is traced too.
    layer = make_layer(fields).train()
    x, mask = inputs()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(layer)(x, mask)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]


@pytest.mark.slow
@pytest.mark.parametrize("fields", KINDS[:3], ids=_name)
def test_inductor_compile_equals_eager(fields):
    layer = make_layer(fields)
    x, mask = inputs()
    compiled = torch.compile(layer, fullgraph=True)
    with torch.no_grad():
        got, want = compiled(x, mask), layer(x, mask)
    torch.testing.assert_close(got.hidden_states, want.hidden_states, atol=1e-5, rtol=1e-5)
    # With gradients: the blocked kernel's autograd.Function is traced as well.
    x.requires_grad_()
    got = compiled(x, mask).hidden_states
    torch.testing.assert_close(got, layer(x, mask).hidden_states, atol=1e-5, rtol=1e-5)
    (grad_got,) = torch.autograd.grad(got.sum(), x)
    (grad_want,) = torch.autograd.grad(layer(x, mask).hidden_states.sum(), x)
    torch.testing.assert_close(grad_got, grad_want, atol=1e-5, rtol=1e-5)
