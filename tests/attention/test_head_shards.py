"""A HybridAttention whose projections are sharded by heads (as tensor parallelism shards them).

Each shard keeps the rows of q/k/v_proj (and gate_proj) for its heads (column-wise parallel) and the
matching input columns of o_proj (row-wise parallel); the layer infers its local head count, and the
shards' outputs summed (plus o_proj's bias once) are the whole layer's output.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hybridformer.attention import AttentionConfig, HybridAttention, KVCache

D_MODEL, HEADS = 16, 4
HEAD_DIM = D_MODEL // HEADS


def _rows(linear: nn.Linear, start: int, stop: int) -> nn.Linear:
    """Output features start..stop-1 of `linear` (a column-wise parallel shard)."""
    shard = nn.Linear(linear.in_features, stop - start, dtype=linear.weight.dtype)
    with torch.no_grad():
        shard.weight.copy_(linear.weight[start:stop])
        shard.bias.copy_(linear.bias[start:stop])
    return shard


def _columns(linear: nn.Linear, start: int, stop: int) -> nn.Linear:
    """Input features start..stop-1 of `linear`, without bias (a row-wise parallel shard)."""
    shard = nn.Linear(stop - start, linear.out_features, bias=False, dtype=linear.weight.dtype)
    with torch.no_grad():
        shard.weight.copy_(linear.weight[:, start:stop])
    return shard


def head_shard(layer: HybridAttention, first: int, last: int) -> HybridAttention:
    """The layer restricted to heads first..last-1; config (n_heads) left as the whole layer's."""
    shard = copy.deepcopy(layer)
    features = slice(first * HEAD_DIM, last * HEAD_DIM)
    for name in ("q_proj", "k_proj", "v_proj"):
        setattr(shard, name, _rows(getattr(layer, name), features.start, features.stop))
    shard.o_proj = _columns(layer.o_proj, features.start, features.stop)
    if hasattr(layer, "gate_proj"):  # output 2·h + g: gate g of head h
        shard.gate_proj = _rows(layer.gate_proj, 2 * first, 2 * last)
    return shard


LAYERS = [
    dict(kind="full"),
    dict(kind="full", causal=True),
    dict(kind="hybrid", combine="union"),
    dict(kind="hybrid", combine="gated", global_queries_attend_all=True),
    dict(kind="hybrid", combine="gated", local="sliding", causal=True),
]


# Every layer in a full forward, the causal ones also decoding token by token with a KV cache.
CASES = [(f, False) for f in LAYERS] + [(f, True) for f in LAYERS if f.get("causal")]


@pytest.mark.parametrize(
    "fields, cached", CASES, ids=lambda c: "cached" if c is True else "forward" if c is False else "-".join(map(str, c.values()))
)
def test_half_head_shards_sum_to_the_whole_layer(fields, cached):
    torch.manual_seed(0)
    layer = HybridAttention(AttentionConfig(selection="scorer", d_model=D_MODEL, n_heads=HEADS, window=4, global_k=3, **fields))
    if layer.config.kind == "hybrid":
        nn.init.normal_(layer.scorer.net.weight)
    layer = layer.double().eval()
    x = torch.randn(2, 11, D_MODEL, dtype=torch.float64)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, :3] = False

    def run(module):
        if not cached:
            return module(x, mask).hidden_states
        cache = KVCache()
        return torch.cat([module(x[:, t : t + 1], mask[:, t : t + 1], cache=cache).hidden_states for t in range(11)], 1)

    with torch.no_grad():
        whole = run(layer)
        shards = [run(head_shard(layer, first, first + HEADS // 2)) for first in (0, HEADS // 2)]
    assert shards[0].shape == whole.shape
    torch.testing.assert_close(shards[0] + shards[1] + layer.o_proj.bias, whole, atol=1e-12, rtol=0)
