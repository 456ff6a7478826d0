"""FFN kernels under a gate mask: the dense masked form (training, reference) and the sparse one.

The sparse kernel computes only the open groups, the way MoE layers dispatch tokens to experts: a
neuron group g is a contiguous block of rows of ``fc_in`` and of columns of ``fc_out``, so for each
group the tokens that open it are gathered, pass through ``(n_g, d) @ (d, d_ff/G)`` and
``(n_g, d_ff/G) @ (d_ff/G, d)``, and are added back into their rows. All groups share one gather,
one activation call and one scatter-add per chunk of tokens (the per-group matmuls write into slices
of shared buffers), which keeps the per-call overhead low at batch 1; chunking the tokens keeps the
gathered buffers in cache at batch 32. benchmarks/sparse_ffn.py compares it with the dense FFN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["CHUNK_TOKENS", "grouped_ffn", "masked_ffn"]

CHUNK_TOKENS = 512
"""Tokens dispatched together by :func:`grouped_ffn`; measured on CPU (d_model 512, d_ff 2048)."""


def masked_ffn(
    x: Tensor,
    group_gates: Tensor,
    run_gates: Tensor,
    fc_in: nn.Linear,
    fc_out: nn.Linear,
    activation: Callable[[Tensor], Tensor],
) -> Tensor:
    """Dense FFN with the gates applied: ``fc_out(act(fc_in(x)) * gates) * run``. Differentiable.

    Computes every group, so it costs the dense FFN; it is the training path (the straight-through
    gradient needs the closed groups' values) and the reference the sparse kernel must equal.

    Args:
        x: (..., d_model) tokens.
        group_gates: (..., G) per-group gates (0/1 values, possibly straight-through).
        run_gates: (...) per-token gates; 0 makes the token's output exactly zero (bias included).
        fc_in: d_model -> d_ff linear layer, d_ff divisible by G.
        fc_out: d_ff -> d_model linear layer.
        activation: elementwise activation.

    Returns:
        (..., d_model) outputs.
    """
    n_groups = group_gates.shape[-1]
    h = activation(fc_in(x))  # (..., d_ff)
    h = h.unflatten(-1, (n_groups, -1)) * group_gates.unsqueeze(-1)  # (..., G, d_ff/G)
    return fc_out(h.flatten(-2)) * run_gates.unsqueeze(-1)  # (..., d_model)


@dataclass
class _GroupWeights:
    """Views of one FFN's weights, split by neuron group."""

    w_in: tuple[Tensor, ...]
    b_in: tuple[Tensor, ...] | None
    w_out: tuple[Tensor, ...]


@torch.no_grad()
def grouped_ffn(
    x: Tensor,
    group_mask: Tensor,
    fc_in: nn.Linear,
    fc_out: nn.Linear,
    activation: Callable[[Tensor], Tensor],
    run: Tensor | None = None,
    chunk_tokens: int = CHUNK_TOKENS,
) -> Tensor:
    """Sparse FFN: computes only the open (token, group) pairs. Inference only (no autograd).

    Equals ``masked_ffn(x, group_mask, run, ...)`` up to float rounding.

    Args:
        x: (T, d_model) tokens.
        group_mask: (T, G) bool, True where the token computes the group. Rows of tokens that do
            not run must be all False.
        fc_in: d_model -> d_ff linear layer, d_ff divisible by G.
        fc_out: d_ff -> d_model linear layer.
        activation: elementwise activation.
        run: (T,) bool, False where the token skips the FFN (its output is exactly zero, no bias);
            None = every token runs.
        chunk_tokens: tokens dispatched together.

    Returns:
        (T, d_model) outputs.
    """
    n_tokens = x.shape[0]
    if bool(group_mask.all()):  # every token runs every group (rows of skipped tokens are all False)
        return fc_out(activation(fc_in(x)))
    if fc_out.bias is None:
        out = x.new_zeros(n_tokens, fc_out.out_features)
    elif run is None:
        out = fc_out.bias.expand(n_tokens, -1).clone()
    else:
        out = run.unsqueeze(-1).to(x.dtype) * fc_out.bias  # (T, d_model)
    # Per-group weight views, made once: split() returns all G views in one call.
    group_size = fc_in.out_features // group_mask.shape[1]
    weights = _GroupWeights(
        w_in=fc_in.weight.t().split(group_size, dim=1),  # G x (d_model, d_ff/G)
        b_in=fc_in.bias.split(group_size) if fc_in.bias is not None else None,  # G x (d_ff/G,)
        w_out=fc_out.weight.t().split(group_size, dim=0),  # G x (d_ff/G, d_model)
    )
    for start in range(0, n_tokens, chunk_tokens):
        stop = start + chunk_tokens
        _dispatch_chunk(x[start:stop], group_mask[start:stop], weights, activation, out[start:stop])
    return out


def _dispatch_chunk(
    x: Tensor,
    group_mask: Tensor,
    weights: _GroupWeights,
    activation: Callable[[Tensor], Tensor],
    out: Tensor,
) -> None:
    """Add the open groups' contributions for the chunk's tokens into ``out`` (a view of the output)."""
    # (K, 2) rows (group, token), sorted by group: each group's tokens are one contiguous run.
    tokens = group_mask.t().nonzero()[:, 1]  # (K,)
    counts = group_mask.sum(0).tolist()
    gathered = x.index_select(0, tokens)  # (K, d_model)
    hidden = x.new_empty(len(tokens), weights.w_in[0].shape[1])  # (K, d_ff/G)
    result = x.new_empty(len(tokens), out.shape[1])  # (K, d_model)
    gathered_g, hidden_g, result_g = gathered.split(counts), hidden.split(counts), result.split(counts)
    for g, n in enumerate(counts):
        if n:
            if weights.b_in is None:
                torch.mm(gathered_g[g], weights.w_in[g], out=hidden_g[g])
            else:
                torch.addmm(weights.b_in[g], gathered_g[g], weights.w_in[g], out=hidden_g[g])
    hidden = activation(hidden)
    hidden_g = hidden.split(counts)
    for g, n in enumerate(counts):
        if n:
            torch.mm(hidden_g[g], weights.w_out[g], out=result_g[g])
    out.index_add_(0, tokens, result)
