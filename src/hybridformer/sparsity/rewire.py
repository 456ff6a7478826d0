"""Sort each FFN's neurons by importance, so that its contiguous groups are ranked (network rewiring).

A pretrained FFN's neurons come in no particular order, so every contiguous group of ``d_ff / G``
neurons mixes important and unimportant ones: closing or pruning any group costs about the same.
DynaBERT (Hou et al., 2020) rewires the network before training width-adaptive sub-networks:
neurons are permuted so the most important come first. Here the same permutation makes group 0
hold the most important neurons and group G-1 the least, so the gates have cheap groups to close
and pruning removes the neurons the model needs least.

The importance of hidden neuron j is its mean contribution to the FFN output on calibration data,
``E_tokens[|act(fc_in(x))_j|] * ||fc_out.weight[:, j]||``, measured on the dense FFN (gates bypassed).
Permuting the hidden neurons (``fc_in`` rows and bias, ``fc_out`` columns together) leaves the dense
FFN's function unchanged; gates are per group, so rewire before the gates are trained.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from hybridformer.sparsity.calibration import run_calibration
from hybridformer.sparsity.full_width import full_width
from hybridformer.sparsity.sparse_ffn import GatedFFN

__all__ = ["neuron_importance", "rewire_by_importance"]


def _ffns(model: nn.Module) -> dict[str, GatedFFN]:
    ffns = {name: m for name, m in model.named_modules() if isinstance(m, GatedFFN)}
    if not ffns:
        raise ValueError("model: contains no GatedFFN to rewire")
    return ffns


@torch.no_grad()
def neuron_importance(model: nn.Module, calibration_batches: Iterable[Any]) -> dict[str, Tensor]:
    """Per hidden neuron of every GatedFFN: mean |activation| over real tokens times ||fc_out column||.

    The model runs in eval mode with every FFN dense (gates bypassed), so the measure does not depend
    on how the gates are initialised.

    Args:
        model: any module containing GatedFFN layers (gated or not).
        calibration_batches: batches as :func:`~hybridformer.sparsity.measure_group_usage` takes them.

    Returns:
        float64 (d_ff,) importance per FFN, keyed by module name.

    Raises:
        ValueError: no GatedFFN, or no batches.
    """
    ffns = _ffns(model)
    sums = {name: torch.zeros(ffn.d_ff, dtype=torch.float64) for name, ffn in ffns.items()}
    counts = dict.fromkeys(ffns, 0)

    def record(name: str, ffn: GatedFFN):
        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            x = args[0]  # (B, N, d_model)
            mask = kwargs.get("key_padding_mask", args[1] if len(args) > 1 else None)
            tokens = x.reshape(-1, x.shape[-1]) if mask is None else x[mask]  # (T, d_model)
            sums[name] += ffn.act(ffn.fc_in(tokens)).abs().sum(0).double().cpu()
            counts[name] += tokens.shape[0]

        return hook

    handles = [ffn.register_forward_pre_hook(record(n, ffn), with_kwargs=True) for n, ffn in ffns.items()]
    with full_width(model):
        run_calibration(model, calibration_batches, handles, "rewiring")
    return {
        name: sums[name] / max(counts[name], 1) * ffn.fc_out.weight.detach().double().norm(dim=0).cpu()
        for name, ffn in ffns.items()
    }


@torch.no_grad()
def rewire_by_importance(model: nn.Module, calibration_batches: Iterable[Any]) -> dict[str, Tensor]:
    """Permute every GatedFFN's hidden neurons in place, most important first (see module doc).

    Call it on a model whose gates are not trained yet (e.g. right after loading a dense checkpoint
    with gates switched on): a trained gate's group logits would then read other neurons. The dense
    function of each FFN is unchanged.

    Returns:
        The permutation applied per FFN (new neuron i is old neuron ``perm[i]``), keyed by name.

    Raises:
        ValueError: no GatedFFN, no batches, or an FFN already pruned.
    """
    importance = neuron_importance(model, calibration_batches)
    perms = {}
    for name, ffn in _ffns(model).items():
        if ffn.gate is not None and ffn.n_groups != ffn.config.n_groups:
            raise ValueError(f"rewire_by_importance: {name or 'model'} is already pruned; rewire before pruning")
        perm = importance[name].argsort(descending=True, stable=True).to(ffn.fc_in.weight.device)
        ffn.fc_in.weight.copy_(ffn.fc_in.weight[perm])
        if ffn.fc_in.bias is not None:
            ffn.fc_in.bias.copy_(ffn.fc_in.bias[perm])
        ffn.fc_out.weight.copy_(ffn.fc_out.weight[:, perm])
        perms[name] = perm.cpu()
    return perms
