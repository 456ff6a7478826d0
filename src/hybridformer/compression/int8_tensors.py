"""The int8 tensors of a quantized model, to and from a flat safetensors dict (both saved formats).

:mod:`~hybridformer.compression.int8_format` (classifiers) and :mod:`~hybridformer.compression.int8_multimodal`
store the same things under the same names; only the word table's module path differs:

- per quantized Linear ``<name>.weight.int8`` (out, in) int8, ``<name>.weight.scale`` (out,) and
  ``<name>.bias``; with smoothing ``<name>.input_scale`` (in,);
- the word table ``<table>.weight.uint8``, ``.weight.scale``, ``.weight.zero_point``;
- every other tensor as float under its usual name.
"""

from __future__ import annotations

from collections.abc import Collection

from torch import Tensor, nn

from hybridformer.compression.int8_backends import (
    Int8Embedding,
    Int8Weight,
    backend_for,
    quiet_quantization_warnings,
    read_embedding,
    write_embedding,
)
from hybridformer.compression.int8_smooth import input_scale_of
from hybridformer.compression.quantize import QuantizationSpec

__all__ = ["pack_int8", "unpack_int8", "write_int8"]


def pack_int8(model: nn.Module, spec: QuantizationSpec, table: str, skip: Collection[str] = ()) -> dict[str, Tensor]:
    """The tensors to save of ``model``, quantized as ``spec`` says, with its word table at ``table``.

    Args:
        skip: state-dict keys the caller stores its own way (left out).
    """
    adapter = backend_for(spec.backend, spec.mode)
    modules = dict(model.named_modules())
    tensors: dict[str, Tensor] = {}
    for name in spec.linears:
        value = adapter.read(modules[name])
        tensors[f"{name}.weight.int8"] = value.qweight
        tensors[f"{name}.weight.scale"] = value.scale
        if value.bias is not None:
            tensors[f"{name}.bias"] = value.bias
        scale = input_scale_of(modules[name])
        if scale is not None:
            tensors[f"{name}.input_scale"] = scale
    quantized = list(spec.linears)
    if spec.embeddings:
        rows = read_embedding(modules[table])
        tensors[f"{table}.weight.uint8"] = rows.qweight
        tensors[f"{table}.weight.scale"] = rows.scale
        tensors[f"{table}.weight.zero_point"] = rows.zero_point
        quantized.append(table)
    for key, value in model.state_dict().items():
        if key not in skip and not any(key.startswith(name + ".") for name in quantized):
            tensors[key] = value
    return {k: v.detach().contiguous() for k, v in tensors.items()}


def unpack_int8(state: dict[str, Tensor], spec: QuantizationSpec, source: str, table: str):
    """``(linears, table values or None, float state dict, input scales)`` of a saved ``state``: the
    stored int8 values, and the float state with those layers dequantized (to build the model from).

    Raises:
        ValueError: input scales without smoothing or for unquantized layers, or a stored tensor missing
            (names ``source``).
    """
    float_state = dict(state)
    linears: dict[str, Int8Weight] = {}
    scales = {k[: -len(".input_scale")]: float_state.pop(k) for k in list(float_state) if k.endswith(".input_scale")}
    if scales and spec.smooth is None:
        raise ValueError(f"{source}: has input scales but the config records no smoothing")
    unknown = set(scales) - set(spec.linears)
    if unknown:
        raise ValueError(f"{source}: input scales for layers that are not quantized: {sorted(unknown)[:3]}")
    try:
        for name in spec.linears:
            bias = float_state.get(f"{name}.bias")
            linears[name] = Int8Weight(
                float_state.pop(f"{name}.weight.int8"), float_state.pop(f"{name}.weight.scale"), bias
            )
            float_state[f"{name}.weight"] = linears[name].dequantize()
        rows = None
        if spec.embeddings:
            rows = Int8Embedding(*(float_state.pop(f"{table}.weight.{k}") for k in ("uint8", "scale", "zero_point")))
            float_state[f"{table}.weight"] = rows.dequantize()
    except KeyError as err:
        raise ValueError(f"{source}: lacks {err}") from None
    return linears, rows, float_state, scales


def write_int8(model: nn.Module, spec: QuantizationSpec, linears: dict[str, Int8Weight],
               rows: Int8Embedding | None, table: str) -> None:
    """Put the stored int8 values into a model rebuilt and quantized as ``spec`` says (exactly)."""
    adapter = backend_for(spec.backend, spec.mode)
    modules = dict(model.named_modules())
    with quiet_quantization_warnings():
        for name, value in linears.items():
            adapter.write(modules[name], value)
        if rows is not None:
            write_embedding(modules[table], rows)
