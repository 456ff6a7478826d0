"""Re-initialising a built module in place, so ``to_empty()`` + ``init_weights()`` gives a usable model.

A model built on the meta device has no values; after ``to_empty(device=...)`` its parameters and
buffers hold garbage. :func:`init_module` gives every one of them the value its constructor would:
a submodule with its own ``init_weights()`` does its subtree, otherwise ``reset_parameters()``
(Linear, LayerNorm, Embedding, BatchNorm with its running statistics, the FFN gates), plus the two
modules whose constructors differ from their layers' defaults: the attention scorer (zero output
layer) and the gated FFN's ``kept_groups`` buffer.
"""

from __future__ import annotations

import torch
from torch import nn

from hybridformer.attention.scorer import TokenScorer
from hybridformer.sparsity import GatedFFN

__all__ = ["init_module"]


def init_module(module: nn.Module, *, skip_own: bool = True) -> None:
    """Initialise ``module``'s parameters and buffers in place, in module order (RNG-deterministic).

    Args:
        module: the root; its own ``init_weights`` is not called when ``skip_own`` (so a model's
            ``init_weights`` can call this on itself).
    """
    own = getattr(module, "init_weights", None)
    if own is not None and not skip_own:
        own()
        return
    for child in module.children():
        init_module(child, skip_own=False)
    if isinstance(module, TokenScorer):
        out = module.net[-1] if isinstance(module.net, nn.Sequential) else module.net
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
    elif isinstance(module, GatedFFN) and module.gate is not None:
        with torch.no_grad():
            module.kept_groups.copy_(torch.arange(module.kept_groups.numel()))
    elif hasattr(module, "reset_parameters"):
        module.reset_parameters()
