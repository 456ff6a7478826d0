"""Fuse each attention's q, k and v projections into one Linear before int8 (a deploy transform).

q, k and v read the same hidden states, so ``[q | k | v] = x [W_q; W_k; W_v]^T + [b_q; b_k; b_v]``
is one (d_model -> 3·d_model) product. In float that is exact (the same dot products). For dynamic
int8 it saves work three ways: the activation is quantized once instead of three times, a smoothed
input is multiplied by its scale once (the three share it: SmoothQuant's own choice for q/k/v, the
scale computed over the fused weight's columns), and one GEMM three times as wide packs its
activations once. Per-output-channel int8 weights make the fused layer's int8 values exactly the
three layers' stacked, so unsmoothed the fused model computes what the separate one does.

The float models (and so the benchmark's fp32 baseline) keep three separate projections: training,
tensor parallelism (column-sharded q/k/v) and checkpoints use those names. Only deployed int8 copies
carry ``attention.qkv_proj``, recorded as ``fused_qkv`` in their quantization entry; loading splits
the stored float state back into q/k/v, builds the model and fuses it again the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybridformer.attention.hybrid import HybridAttention

__all__ = ["QKV", "fuse_qkv", "split_qkv_state"]

QKV = "qkv_proj"
"""Name of the fused layer inside an attention module."""


@torch.no_grad()
def fuse_qkv(model: nn.Module) -> int:
    """Replace every float attention's ``q_proj``/``k_proj``/``v_proj`` by one ``qkv_proj`` (in place).

    Only attention layers whose three projections are plain ``nn.Linear`` of the same input width
    are fused (already quantized or otherwise replaced ones are left alone).

    Returns:
        How many attention layers were fused.
    """
    fused = 0
    for module in model.modules():
        if not isinstance(module, HybridAttention) or module.qkv_proj is not None:
            continue
        parts = [getattr(module, name, None) for name in ("q_proj", "k_proj", "v_proj")]
        if not all(type(p) is nn.Linear for p in parts) or len({p.in_features for p in parts}) != 1:
            continue
        has_bias = {p.bias is not None for p in parts}
        if len(has_bias) != 1:
            continue
        weight = torch.cat([p.weight for p in parts])  # (3·d, d) rows [q | k | v]
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias.pop(), device=weight.device,
                          dtype=weight.dtype)
        layer.weight.copy_(weight)
        if layer.bias is not None:
            layer.bias.copy_(torch.cat([p.bias for p in parts]))
        layer.train(module.training)
        for name in ("q_proj", "k_proj", "v_proj"):
            delattr(module, name)
        module.qkv_proj = layer
        fused += 1
    return fused


def split_qkv_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A state dict with every ``<attention>.qkv_proj.{weight,bias}`` split back into q/k/v (in order)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix.endswith("." + QKV) or prefix == QKV:
            base = prefix[: -len(QKV)]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{base}{name}.{leaf}"] = part.contiguous()
        else:
            out[key] = value
    return out
