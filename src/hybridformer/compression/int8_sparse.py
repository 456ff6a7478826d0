"""int8 and sparsity together: a gated FFN kernel that computes only the open groups in int8.

Once :func:`~hybridformer.compression.quantize` has swapped a GatedFFN's ``fc_in``/``fc_out`` for int8
layers, the float grouped kernel can no longer slice them. :class:`Int8GroupKernel` holds, per neuron
group g, an int8 layer of the library that quantized the FFN: ``fc_in``'s rows of g (with their own
per-channel scales) and ``fc_out``'s columns of g (with ``fc_out``'s per-row scales, so the groups'
partial products add up to the whole layer). Those are exact slices of the int8 weights, no new
rounding. Tokens are dispatched as in :func:`~hybridformer.sparsity.grouped_ffn`: each group's
tokens gathered once, through the group's two int8 layers, added back into their rows. So pruning
(fewer groups), gating (only the open ones) and int8 (cheaper products) compound. Tokens that skip
the FFN (padding, layer skip) are left out before anything runs; when the others open every kept
group (a layer pruned to no more groups than a token opens) they go through the dense int8 layers.

With ``mode="dynamic"`` each group call quantizes its own gathered activations (per tensor, as the
dense int8 layer does per call), so the result equals the dense int8 FFN of the same open groups up
to activation rounding; with ``mode="weight"`` up to float rounding. Smoothed layers
(:mod:`hybridformer.compression.int8_smooth`) keep their input scales: ``fc_in``'s is applied to the
tokens once, ``fc_out``'s per group to that group's activations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from hybridformer.compression.int8_smooth import input_scale_of
from hybridformer.sparsity.calibration import gated_ffns
from hybridformer.sparsity.dispatch import CHUNK_TOKENS, masked_ffn

__all__ = ["DENSE_ABOVE", "Int8GroupKernel", "attach_group_kernels"]

DENSE_ABOVE = 0.5
"""Open fraction of the (token, group) pairs above which the kernel runs the dense int8 layers with
the gates applied instead of dispatching: one int8 GEMM packs its activations once, G per-group
GEMMs pack them G times, and on our CPU at MiniLM's shapes (d_ff/G = 96) dispatch did not beat the
dense int8 form above about half the groups open (measured under load, see docs/compression.md)."""


class Int8GroupKernel:
    """The int8 grouped FFN of one GatedFFN (a plain object: its layers are slices, never saved).

    Args:
        fc_in: the FFN's quantized d_model -> d_ff layer.
        fc_out: the FFN's quantized d_ff -> d_model layer.
        n_groups: current neuron groups G (after pruning), dividing d_ff.
        activation: the FFN's elementwise activation.
        adapter: the backend adapter that quantized the layers (reads and builds int8 layers).
        mode: the quantization mode the group layers are built in.
        chunk_tokens: tokens dispatched together.
        dense_above: open fraction above which the dense int8 layers run with the gates applied
            (the same values, see :data:`DENSE_ABOVE`); 1.0 always dispatches.
    """

    def __init__(
        self,
        fc_in: nn.Module,
        fc_out: nn.Module,
        n_groups: int,
        activation: Callable[[Tensor], Tensor],
        adapter: Any,
        mode: str,
        chunk_tokens: int = CHUNK_TOKENS,
        dense_above: float = DENSE_ABOVE,
    ) -> None:
        w_in, w_out = adapter.read(fc_in), adapter.read(fc_out)
        d_ff = w_in.qweight.shape[0]
        if d_ff % n_groups or w_out.qweight.shape[1] != d_ff:
            raise ValueError(f"Int8GroupKernel: {n_groups} groups do not split d_ff={d_ff} of both layers")
        size = d_ff // n_groups
        blocks = torch.arange(d_ff).view(n_groups, size)  # (G, d_ff/G) neuron indices of each group
        self.fc_in, self.fc_out, self.act, self.chunk_tokens = fc_in, fc_out, activation, chunk_tokens
        self.dense_above = dense_above
        self.groups_in = [adapter.build(w_in.rows(b), mode, like=fc_in) for b in blocks]
        self.groups_out = [adapter.build(w_out.columns(b, with_bias=False), mode, like=fc_out) for b in blocks]
        self.bias_out = w_out.bias
        self.d_model = w_out.qweight.shape[0]
        self.scale_in = input_scale_of(fc_in)  # (d_model,) or None
        scale_out = input_scale_of(fc_out)
        self.scales_out = None if scale_out is None else [scale_out[b] for b in blocks]  # G x (d_ff/G,)

    @torch.no_grad()
    def __call__(self, x: Tensor, group_mask: Tensor, run: Tensor) -> Tensor:
        """The FFN outputs of the open (token, group) pairs.

        Args:
            x: (T, d_model) tokens.
            group_mask: (T, G) bool, True where the token computes the group (all False where it
                does not run).
            run: (T,) bool, False where the token skips the FFN (output exactly zero, no bias).

        Returns:
            (T, d_model) float outputs.
        """
        if bool(group_mask.all()):
            return self.fc_out(self.act(self.fc_in(x)))
        running = int(run.sum())
        if running < x.shape[0]:
            # Skipped tokens (padding, layer skip) compute nothing: run the others alone.
            out = x.new_zeros(x.shape[0], self.d_model)
            if running:
                rows = run.nonzero().squeeze(1)  # (running,)
                out.index_copy_(0, rows, self(x.index_select(0, rows), group_mask.index_select(0, rows), run[rows]))
            return out
        if float(group_mask.sum()) > self.dense_above * running * group_mask.shape[1]:
            return masked_ffn(x, group_mask.to(x.dtype), run.to(x.dtype), self.fc_in, self.fc_out, self.act)
        if self.bias_out is None:
            out = x.new_zeros(x.shape[0], self.d_model)
        else:
            out = run.unsqueeze(-1).to(x.dtype) * self.bias_out  # (T, d_model)
        for start in range(0, x.shape[0], self.chunk_tokens):
            stop = start + self.chunk_tokens
            self._dispatch_chunk(x[start:stop], group_mask[start:stop], out[start:stop])
        return out

    def _dispatch_chunk(self, x: Tensor, group_mask: Tensor, out: Tensor) -> None:
        """Add the open groups' contributions of the chunk's tokens into ``out`` (a view)."""
        tokens = group_mask.t().nonzero()[:, 1]  # (K,) token of each open pair, grouped by group
        if tokens.numel() == 0:
            return
        counts = group_mask.sum(0).tolist()
        if self.scale_in is not None:
            x = x * self.scale_in
        gathered = x.index_select(0, tokens).split(counts)  # G x (n_g, d_model)
        parts = []
        for g, n in enumerate(counts):
            if n:
                h = self.act(self.groups_in[g](gathered[g]))  # (n_g, d_ff/G)
                if self.scales_out is not None:
                    h = h * self.scales_out[g]
                parts.append(self.groups_out[g](h))  # (n_g, d_model)
        out.index_add_(0, tokens, torch.cat(parts))


def attach_group_kernels(model: nn.Module, adapter: Any, mode: str) -> int:
    """Give every gated FFN of ``model`` whose layers ``adapter`` quantized an :class:`Int8GroupKernel`.

    Returns:
        How many FFNs got one.
    """
    attached = 0
    for ffn in gated_ffns(model).values():
        if adapter.is_quantized(ffn.fc_in) and adapter.is_quantized(ffn.fc_out):
            ffn.sparse_kernel = Int8GroupKernel(ffn.fc_in, ffn.fc_out, ffn.n_groups, ffn.act, adapter, mode)
            attached += 1
    return attached
