"""SmoothQuant-style per-channel smoothing before dynamic int8 (Xiao et al., 2023).

torch.ao's dynamic int8 Linear quantizes its input per tensor (one scale for the whole
(tokens, features) activation, asymmetric, 7 bits with fbgemm's ``reduce_range``): MiniLM's
LayerNorm outputs carry a few outlier features (BERT's known outlier dimensions) that take most of
the range and leave the other features few levels. Smoothing moves that range into the weights,
which are quantized per output channel and take it well:

    y = x W^T = (x diag(1/s)) (W diag(s))^T,   s_j = max|x_j|^alpha / max_i |W_ij|^(1 - alpha)

with ``max|x_j|`` calibrated per input channel on a few real batches. ``W diag(s)`` is quantized
instead of W; ``x diag(1/s)`` is one elementwise product before the layer (:func:`attach_input_scales`,
a forward pre-hook holding ``int8_input_scale`` = 1/s). In float, smoothing is an identity.

Why an explicit scale, not folded into the LayerNorm before the layer: our MiniLM blocks are post-LN
(BERT), where a LayerNorm's output is also the residual stream of the next sublayer, so scaling its
weight and bias would change the residual path too; the product costs one pass over the activation,
little beside the int8 GEMM it feeds.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from hybridformer.sparsity.calibration import gated_ffns
from hybridformer.sparsity.dispatch import masked_ffn

__all__ = [
    "INPUT_SCALE",
    "attach_input_scales",
    "calibration_batches",
    "drop_input_scale",
    "input_maxima",
    "input_scale_of",
    "smooth_weights",
]

INPUT_SCALE = "int8_input_scale"
"""Attribute of a smoothed layer holding its (in_features,) input scale 1/s."""

_HOOK = "_int8_input_scale_hook"


@torch.no_grad()
def input_maxima(model: nn.Module, names: Iterable[str], batches: Iterable[Mapping[str, Any]]) -> dict[str, Tensor]:
    """Per-input-channel ``max |x|`` of the Linear layers ``names`` over ``batches`` (model inputs).

    Args:
        model: the float model (eval mode), the layers still plain ``nn.Linear``.
        names: module paths of the layers to calibrate.
        batches: keyword inputs of ``model`` (e.g. collated batches; keys its ``forward`` does not
            name, such as ``labels``, are dropped).

    Raises:
        ValueError: no batch at all.
    """
    modules = dict(model.named_modules())
    maxima: dict[str, Tensor] = {}
    handles = []

    def record(name: str):
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            seen = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)  # (in_features,)
            maxima[name] = seen if name not in maxima else torch.maximum(maxima[name], seen)

        return hook

    for name in names:
        handles.append(modules[name].register_forward_pre_hook(record(name)))
    # Gated FFNs' float kernel slices fc_in/fc_out instead of calling them: calibrate them through
    # the masked form (the same values), which calls the layers (and so the hooks).
    kernels = {ffn: ffn.sparse_kernel for ffn in gated_ffns(model).values()}
    for ffn in kernels:
        ffn.sparse_kernel = _masked_kernel(ffn)
    accepted = set(inspect.signature(model.forward).parameters)
    count = 0
    try:
        for batch in batches:
            model(**{k: v for k, v in batch.items() if k in accepted})
            count += 1
    finally:
        for handle in handles:
            handle.remove()
        for ffn, kernel in kernels.items():
            ffn.sparse_kernel = kernel
    if count == 0:
        raise ValueError("calibration: no batches to calibrate the smoothing on")
    return maxima


@torch.no_grad()
def smooth_weights(model: nn.Module, maxima: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """Scale the float weights of the calibrated layers by ``s`` per input channel (in place).

    A channel never active in calibration (max 0) or with an all-zero weight column keeps ``s = 1``.

    Returns:
        name -> (in_features,) input scale ``1/s`` that :func:`attach_input_scales` applies.

    Raises:
        ValueError: ``alpha`` outside [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smooth: alpha must be in [0, 1], got {alpha}")
    modules = dict(model.named_modules())
    scales: dict[str, Tensor] = {}
    for name, x_max in maxima.items():
        layer = modules[name]
        w_max = layer.weight.detach().abs().amax(0).float()  # (in_features,)
        x_max = x_max.float()
        s = x_max.pow(alpha) / w_max.pow(1.0 - alpha)
        s = torch.where((x_max > 0) & (w_max > 0) & torch.isfinite(s), s, torch.ones_like(s)).clamp(1e-4, 1e4)
        layer.weight.mul_(s.to(layer.weight.dtype))  # W diag(s): column j times s_j
        scales[name] = (1.0 / s).contiguous()
    return scales


def _masked_kernel(ffn: nn.Module):
    """A GatedFFN ``sparse_kernel`` computing the masked dense form through the FFN's own layers."""

    def kernel(x: Tensor, group_mask: Tensor, run: Tensor) -> Tensor:
        return masked_ffn(x, group_mask.to(x.dtype), run.to(x.dtype), ffn.fc_in, ffn.fc_out, ffn.act)

    return kernel


def _scale_input(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return (args[0] * getattr(module, INPUT_SCALE), *args[1:])


def attach_input_scales(model: nn.Module, scales: Mapping[str, Tensor]) -> None:
    """Make each named layer multiply its input by its scale before computing (a forward pre-hook).

    Raises:
        ValueError: a name that is not a module of ``model``, or a scale of the wrong length.
    """
    modules = dict(model.named_modules())
    for name, scale in scales.items():
        if name not in modules:
            raise ValueError(f"smooth: no layer {name!r} in the model")
        layer = modules[name]
        width = getattr(layer, "in_features", scale.numel())
        if scale.shape != (width,):
            raise ValueError(f"smooth: {name}.input_scale has shape {tuple(scale.shape)}, the layer takes {width}")
        setattr(layer, INPUT_SCALE, scale.float().contiguous())
        if getattr(layer, _HOOK, None) is None:
            setattr(layer, _HOOK, layer.register_forward_pre_hook(_scale_input))


def input_scale_of(layer: nn.Module) -> Tensor | None:
    """The input scale 1/s attached to ``layer``, or None if it is not smoothed."""
    return getattr(layer, INPUT_SCALE, None)


def drop_input_scale(layer: nn.Module) -> None:
    """Remove ``layer``'s input scale and its pre-hook (after the scale was folded elsewhere)."""
    handle = getattr(layer, _HOOK, None)
    if handle is not None:
        handle.remove()
        delattr(layer, _HOOK)
    if hasattr(layer, INPUT_SCALE):
        delattr(layer, INPUT_SCALE)
