"""The int8 libraries behind :func:`~hybridformer.compression.quantize`: torch.ao and torchao, one adapter each.

Both store a Linear's weight as symmetric per-output-channel int8 (``W ≈ q * scale[:, None]``);
they differ in how the product is computed on CPU:

- ``ao``: ``torch.ao.quantization.quantize_dynamic`` swaps ``nn.Linear`` for
  ``torch.ao.nn.quantized.dynamic.Linear`` (fbgemm/x86 int8 GEMM, activations quantized per call).
  Deprecated in torch 2.x but still the fastest int8 path on this CPU (docs/compression.md).
  It has no weight-only int8 Linear.
- ``torchao``: ``torchao.quantization.quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` or
  ``Int8WeightOnlyConfig`` puts an ``Int8Tensor`` weight in the same ``nn.Linear``; without
  ``torch.compile`` it is slower than fp32 on CPU (pytorch/ao issues 3157 and 4365).

An adapter can quantize a module's Linear layers, and read/write the int8 values and scales of one
quantized layer exactly (:class:`Int8Weight`), which is how a saved model is restored bit for bit.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from hybridformer.config import ConfigError

__all__ = [
    "BACKENDS",
    "Backend",
    "Int8Embedding",
    "Int8Weight",
    "Mode",
    "backend_for",
    "quantize_embedding",
    "quiet_quantization_warnings",
    "read_embedding",
    "write_embedding",
]

Mode = Literal["weight", "dynamic"]
Backend = Literal["ao", "torchao"]
BACKENDS: tuple[Backend, ...] = ("ao", "torchao")


@dataclass
class Int8Weight:
    """The stored form of one quantized Linear layer."""

    qweight: Tensor
    """(out, in) int8 values."""
    scale: Tensor
    """(out,) per-output-channel scales (float64 for ``ao``, float32 for ``torchao``, kept as is)."""
    bias: Tensor | None
    """(out,) float bias, or None."""

    def dequantize(self) -> Tensor:
        """(out, in) float32 weight ``qweight * scale``."""
        return (self.qweight.to(torch.float64) * self.scale.to(torch.float64)[:, None]).float()

    def rows(self, index: Tensor) -> Int8Weight:
        """The output channels ``index`` (their own scales): a slice that computes exactly those outputs."""
        bias = None if self.bias is None else self.bias[index]
        return Int8Weight(self.qweight[index].contiguous(), self.scale[index].contiguous(), bias)

    def columns(self, index: Tensor, with_bias: bool) -> Int8Weight:
        """The input channels ``index``: same per-row scales, so partial products add up to the whole."""
        return Int8Weight(self.qweight[:, index].contiguous(), self.scale, self.bias if with_bias else None)


@contextmanager
def quiet_quantization_warnings() -> Iterator[None]:
    """Silence torch's deprecation notices for its quantized tensors (a known, documented choice here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantiz.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization.*")
        warnings.filterwarnings("ignore", message=r".*Enum subclass.*")
        yield


class _AoBackend:
    """torch.ao dynamic quantization (fbgemm/x86 kernels)."""

    name: Backend = "ao"
    modes: tuple[Mode, ...] = ("dynamic",)

    def quantize(self, module: nn.Module, mode: Mode, keep: Callable[[str, nn.Module], bool]) -> None:
        from torch.ao.nn.quantized.dynamic import Linear as QLinear
        from torch.ao.quantization import per_channel_dynamic_qconfig

        for parent, name, child, _ in _linears(module, keep):
            child.qconfig = per_channel_dynamic_qconfig
            setattr(parent, name, QLinear.from_float(child))

    def is_quantized(self, layer: nn.Module) -> bool:
        from torch.ao.nn.quantized.dynamic import Linear as QLinear

        return isinstance(layer, QLinear)

    def read(self, layer: nn.Module) -> Int8Weight:
        weight, bias = layer._packed_params._weight_bias()
        return Int8Weight(weight.int_repr(), weight.q_per_channel_scales(), None if bias is None else bias.detach())

    def write(self, layer: nn.Module, value: Int8Weight) -> None:
        zero = torch.zeros(value.scale.shape, dtype=torch.long)
        weight = torch._make_per_channel_quantized_tensor(value.qweight, value.scale.to(torch.float64), zero, 0)
        layer.set_weight_bias(weight, value.bias)

    def build(self, value: Int8Weight, mode: Mode = "dynamic", like: nn.Module | None = None) -> nn.Module:
        """A new int8 layer holding exactly ``value`` (``like`` is not needed here)."""
        from torch.ao.nn.quantized.dynamic import Linear as QLinear

        out_features, in_features = value.qweight.shape
        layer = QLinear(in_features, out_features, bias_=value.bias is not None, dtype=torch.qint8)
        self.write(layer, value)
        return layer


class _TorchaoBackend:
    """torchao ``quantize_`` with its int8 configs (Int8Tensor weights inside nn.Linear)."""

    name: Backend = "torchao"
    modes: tuple[Mode, ...] = ("weight", "dynamic")

    def _config(self, mode: Mode):
        # torchao 0.18 registers an Enum with torch's pytree at import, which logs a deprecation warning.
        pytree_log = logging.getLogger("torch.utils._pytree")
        level = pytree_log.level
        pytree_log.setLevel(logging.ERROR)
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
        except ImportError:
            raise ImportError(
                "backend: 'torchao' needs the torchao package (pip install torchao==0.18.0)"
            ) from None
        finally:
            pytree_log.setLevel(level)
        return Int8WeightOnlyConfig() if mode == "weight" else Int8DynamicActivationInt8WeightConfig()

    def quantize(self, module: nn.Module, mode: Mode, keep: Callable[[str, nn.Module], bool]) -> None:
        from torchao.quantization import quantize_

        chosen = {id(child) for _, _, child, _ in _linears(module, keep)}
        quantize_(module, self._config(mode), filter_fn=lambda m, fqn: id(m) in chosen)

    def is_quantized(self, layer: nn.Module) -> bool:
        return type(layer) is nn.Linear and hasattr(layer.weight, "qdata")

    def read(self, layer: nn.Module) -> Int8Weight:
        weight = layer.weight
        bias = None if layer.bias is None else layer.bias.detach()
        return Int8Weight(weight.qdata.detach(), weight.scale.detach().reshape(-1), bias)

    def write(self, layer: nn.Module, value: Int8Weight) -> None:
        weight = layer.weight
        if tuple(weight.qdata.shape) != tuple(value.qweight.shape):
            raise ValueError(f"int8 weight: shape {tuple(value.qweight.shape)} does not fit {tuple(weight.qdata.shape)}")
        with torch.no_grad():
            weight.qdata.copy_(value.qweight)
            weight.scale.copy_(value.scale.reshape(weight.scale.shape))
            weight.zero_point.zero_()
            if value.bias is not None:
                layer.bias.copy_(value.bias)

    def build(self, value: Int8Weight, mode: Mode = "dynamic", like: nn.Module | None = None) -> nn.Module:
        """A new int8 layer of ``mode`` holding exactly ``value``; with ``like`` (a layer this backend
        quantized in ``mode``) its weight tensor settings are copied instead of quantizing anew."""
        out_features, in_features = value.qweight.shape
        layer = nn.Linear(in_features, out_features, bias=value.bias is not None, device="meta")
        if like is None:
            layer = layer.to_empty(device="cpu")
            holder = nn.Sequential(layer)
            self.quantize(holder, mode, lambda name, m: True)
            self.write(holder[0], value)
            return holder[0]
        template = like.weight
        weight = type(template)(
            value.qweight,
            value.scale.reshape(-1, 1),
            [1, in_features],
            template.dtype,
            zero_point=torch.zeros(out_features, 1, dtype=template.zero_point.dtype),
            act_quant_kwargs=template.act_quant_kwargs,
        )
        layer.weight = nn.Parameter(weight, requires_grad=False)
        layer.bias = None if value.bias is None else nn.Parameter(value.bias.clone(), requires_grad=False)
        return layer


@dataclass
class Int8Embedding:
    """The stored form of one quantized embedding table (torch.ao per-row asymmetric uint8)."""

    qweight: Tensor
    """(rows, d) uint8 values."""
    scale: Tensor
    """(rows,) float32 scales."""
    zero_point: Tensor
    """(rows,) float32 zero points (``W ≈ (q - zero_point) * scale`` row by row)."""

    def dequantize(self) -> Tensor:
        """(rows, d) float32 table."""
        return (self.qweight.float() - self.zero_point[:, None]) * self.scale[:, None]


def quantize_embedding(table: nn.Embedding) -> nn.Module:
    """``torch.ao.nn.quantized.Embedding`` of ``table``: uint8 rows, a float scale and zero point per row.

    Lookups return float rows, so the encoder's embedding sum is unchanged; both backends use it,
    since torchao's int8 configs cover Linear layers only.
    """
    from torch.ao.nn.quantized import Embedding as QEmbedding
    from torch.ao.quantization import float_qparams_weight_only_qconfig

    table.qconfig = float_qparams_weight_only_qconfig
    return QEmbedding.from_float(table)


def read_embedding(table: nn.Module) -> Int8Embedding:
    """The uint8 values, scales and zero points of a quantized embedding."""
    weight = table.weight()
    return Int8Embedding(weight.int_repr(), weight.q_per_channel_scales(), weight.q_per_channel_zero_points())


def write_embedding(table: nn.Module, value: Int8Embedding) -> None:
    """Put stored uint8 rows into a quantized embedding (exactly)."""
    weight = torch._make_per_channel_quantized_tensor(value.qweight, value.scale, value.zero_point, 0)
    table.set_weight(weight)


def _linears(module: nn.Module, keep: Callable[[str, nn.Module], bool]):
    """(parent, attribute, layer, full name) of every plain float nn.Linear that ``keep`` selects."""
    found = []
    for parent_name, parent in module.named_modules():
        for name, child in parent.named_children():
            full = f"{parent_name}.{name}" if parent_name else name
            if type(child) is nn.Linear and type(child.weight) is nn.Parameter and keep(full, child):
                found.append((parent, name, child, full))
    return found


_BACKENDS = {"ao": _AoBackend(), "torchao": _TorchaoBackend()}


def backend_for(backend: str, mode: str) -> _AoBackend | _TorchaoBackend:
    """The adapter of ``backend`` after checking it offers ``mode``.

    Raises:
        ConfigError: unknown backend or mode, or a mode the backend lacks.
    """
    if mode not in ("weight", "dynamic"):
        raise ConfigError(f"mode: must be 'weight' or 'dynamic', got {mode!r}")
    if backend not in _BACKENDS:
        raise ConfigError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    adapter = _BACKENDS[backend]
    if mode not in adapter.modes:
        raise ConfigError(
            f"backend: {backend!r} has no {mode!r} int8 mode (torch.ao has no weight-only int8 Linear); "
            f"use backend='torchao' for mode='weight'"
        )
    return adapter
