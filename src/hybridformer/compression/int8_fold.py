"""Fold the smoothing scale of ``o_proj``'s input into the V projection (an exact int8 transform).

SmoothQuant (:mod:`hybridformer.compression.int8_smooth`) multiplies each smoothed layer's input by a
per-channel scale ``a = 1/s`` before the int8 product. For an attention's ``o_proj`` that input is
the attention context, and channel c of the context of head h is ``sum_j p_ij v_j[c]``: a weighted
sum of the value vectors, linear in v channel by channel (the weights p do not depend on v). So
scaling the V projection's output channel c by ``a_c`` scales context channel c by ``a_c`` exactly,
and ``o_proj`` no longer needs its product. With per-output-channel int8 weights the fold is a change
of ``v_proj``'s row scales and bias (the v rows of a fused ``qkv_proj``,
:mod:`hybridformer.compression.int8_fuse`) (``scale_c * a_c``, ``bias_c * a_c``), the int8 values untouched:
the same outputs up to float rounding, one elementwise pass over the (tokens, d_model) context per
block saved.

Every path of :class:`~hybridformer.attention.HybridAttention` is linear in v that way: full and
local attention, the hybrid union and gated branches (weighted sums of value rows; the gates read the
hidden state), the compressed branch (block summaries of v pooled with weights computed from k) and
the KV-cache paths (the cache then holds the scaled values, consistently). A folded model saves and
loads as any other: ``v_proj`` holds the folded scales and ``o_proj`` no input scale.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hybridformer.attention.hybrid import HybridAttention
from hybridformer.compression.int8_smooth import drop_input_scale, input_scale_of

__all__ = ["fold_output_scales"]


@torch.no_grad()
def fold_output_scales(model: nn.Module, adapter: Any) -> int:
    """Move every foldable ``o_proj`` input scale into its ``v_proj`` (in place).

    Args:
        model: a model whose attention projections ``adapter`` quantized and smoothed.
        adapter: the backend adapter (reads and writes the int8 layers exactly).

    Returns:
        How many attention layers were folded.
    """
    folded = 0
    for module in model.modules():
        if not isinstance(module, HybridAttention):
            continue
        scale = input_scale_of(module.o_proj)
        # v's rows: all of v_proj, or the last third of a fused qkv_proj (rows [q | k | v]).
        v_layer = module.qkv_proj if module.qkv_proj is not None else module.v_proj
        if scale is None or not (adapter.is_quantized(v_layer) and adapter.is_quantized(module.o_proj)):
            continue
        value = adapter.read(v_layer)
        rows = torch.ones_like(value.scale)
        rows[-scale.numel():] = scale.to(rows.dtype)  # (d_model,) v row c times a_c; q and k rows stay
        value.scale = value.scale * rows
        if value.bias is not None:
            value.bias = value.bias * rows.to(value.bias.dtype)
        adapter.write(v_layer, value)
        drop_input_scale(module.o_proj)
        folded += 1
    return folded
