"""int8 for the multimodal model: int8 compute for its Linear layers, int8 storage for the rest.

:func:`quantize_multimodal` applies :func:`~hybridformer.compression.quantize` to a
:class:`~hybridformer.models.MultimodalModel` (every Linear of the text encoder, the fusion layers,
the decoder and the heads, except the token scorers and FFN gates, which decide what is computed) and
stores the text encoder's word table as per-row uint8, as for a classifier. What has no int8 kernel
on our CPU stays float in compute but is stored int8 (:func:`is_stored_int8`): the image and video trunks'
convolution kernels and the decoder's token table, which is also its output projection (tied), are
rounded to symmetric per-row int8 (one scale per output channel or token) in place, so the model in
memory computes exactly what it computes after saving and loading.

A folder (:mod:`hybridformer.model_folder`) holds ``hybridformer.json`` (the multimodal config, a
``quantization`` entry and the ``int8_storage`` names) and ``model.safetensors``:

- per int8 Linear ``<name>.weight.int8``, ``<name>.weight.scale`` and ``<name>.bias``;
- the word table ``<table>.weight.uint8``, ``.weight.scale``, ``.weight.zero_point``;
- per stored tensor ``<name>.int8`` (rows, ...) and ``<name>.scale`` (rows,);
- every other tensor as float under its usual name.

``hybridformer.registry`` saves and loads it (:func:`pack_multimodal`, :func:`load_multimodal_int8`),
so ``generate``, ``serve`` and the multimodal evaluation read it unchanged. Loading never unpickles:
the model is built from its config, quantized the same way, and the stored int8 values are written
into it exactly.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from hybridformer.compression.int8_backends import (
    Backend,
    Int8Weight,
    Mode,
    backend_for,
    quantize_embedding,
    quiet_quantization_warnings,
)
from hybridformer.compression.int8_tensors import pack_int8, unpack_int8, write_int8
from hybridformer.compression.quantize import SPEC_ATTRIBUTE, QuantizationSpec, quantization_of, quantize
from hybridformer.model_folder import FolderMeta

if TYPE_CHECKING:
    from hybridformer.models.multimodal import MultimodalModel

__all__ = ["is_stored_int8", "load_multimodal_int8", "pack_multimodal", "quantize_multimodal", "stored_int8"]

TABLE = "text_encoder.embeddings.word_embeddings"
"""The text encoder's word table (looked up, never multiplied): per-row uint8."""
STORED_ATTRIBUTE = "int8_storage"
"""Where :func:`quantize_multimodal` records the int8-stored float tensors (name -> their int8 form)."""


def is_stored_int8(name: str, tensor: Tensor) -> bool:
    """The float tensors stored int8: convolution kernels (4-D/5-D) and the decoder's token table."""
    return tensor.dim() >= 4 or name == "decoder.token_embeddings.weight"


def _round_rows(weight: Tensor) -> Int8Weight:
    """Symmetric per-row int8 of ``weight`` (rows = dim 0), ``q`` in the weight's shape:
    ``q = round(w / s)``, ``s = max|w_row| / 127``."""
    rows = weight.detach().reshape(weight.shape[0], -1).double()  # (rows, rest)
    scale = rows.abs().amax(1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return Int8Weight(q.reshape(weight.shape), scale.float(), None)


def _restored(value: Int8Weight) -> Tensor:
    """The float tensor of a per-row int8 form (any number of dims)."""
    q = value.qweight
    return Int8Weight(q.reshape(q.shape[0], -1), value.scale, None).dequantize().reshape(q.shape)


def quantize_multimodal(
    model: MultimodalModel, mode: Mode = "dynamic", backend: Backend | None = None, *, embeddings: bool = True,
    inplace: bool = False, _round: bool = True,
) -> MultimodalModel:
    """int8 the multimodal model for CPU inference (see the module docstring).

    Args:
        model: a trained float :class:`~hybridformer.models.MultimodalModel` on the CPU.
        mode: ``dynamic`` (int8 compute for the Linears) or ``weight`` (int8 storage, float compute).
        backend: as in :func:`~hybridformer.compression.quantize`.
        embeddings: store the text encoder's word table as per-row uint8 (else float).
        inplace: change ``model`` itself instead of a copy.

    Returns:
        The int8 model in eval mode (no autograd), its :class:`QuantizationSpec` and int8-stored
        names recorded on it.

    Raises:
        ValueError: not a multimodal model, already quantized, off the CPU, a bad mode or backend.
    """
    from hybridformer.models.multimodal import MultimodalModel

    if not isinstance(model, MultimodalModel):
        raise ValueError(f"model: quantize_multimodal takes a MultimodalModel, got {type(model).__name__}")
    # q/k/v stay three layers: the multimodal format stores them so (the cached decode runs them side by side)
    target = quantize(model, mode, backend, embeddings=False, inplace=inplace, fuse_qkv=False)
    stored: dict[str, Int8Weight] = {}
    if _round:
        with torch.no_grad():
            for name, param in target.named_parameters():
                if is_stored_int8(name, param):
                    stored[name] = _round_rows(param)
                    param.copy_(_restored(stored[name]))
    embedded = embeddings and type(target.text_encoder.embeddings.word_embeddings) is nn.Embedding
    if embedded:
        with quiet_quantization_warnings():
            table = target.text_encoder.embeddings
            table.word_embeddings = quantize_embedding(table.word_embeddings)
    spec = dataclasses.replace(quantization_of(target), embeddings=embedded)
    setattr(target, SPEC_ATTRIBUTE, spec)
    setattr(target, STORED_ATTRIBUTE, stored)
    return target.requires_grad_(False)


def stored_int8(model: nn.Module) -> dict[str, Int8Weight]:
    """The float tensors :func:`quantize_multimodal` stores int8, by name (empty for other models)."""
    return getattr(model, STORED_ATTRIBUTE, {})


def pack_multimodal(model: MultimodalModel) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(the tensors to save, extra ``hybridformer.json`` entries: ``int8_storage``) of an int8 multimodal model.

    Raises:
        ValueError: the model is not quantized, or its q/k/v were fused.
    """
    spec = quantization_of(model)
    if spec is None:
        raise ValueError("model: not quantized; call hybridformer.compression.quantize_multimodal(model) first")
    if spec.fused_qkv:
        raise ValueError("model: its q/k/v were fused (quantize's fuse_qkv); the multimodal format keeps them apart: "
                         "quantize the float model with hybridformer.compression.quantize_multimodal")
    stored = stored_int8(model)
    tensors = pack_int8(model, spec, TABLE, skip=stored)
    for name, value in stored.items():
        tensors[f"{name}.int8"], tensors[f"{name}.scale"] = value.qweight.contiguous(), value.scale.contiguous()
    return tensors, {"int8_storage": sorted(stored)}


def load_multimodal_int8(meta: FolderMeta, state: dict[str, Tensor], source: str) -> MultimodalModel:
    """Rebuild the int8 multimodal model of a folder (the same outputs, bit for bit).

    Args:
        meta: the folder's ``hybridformer.json`` (with its ``quantization`` and ``int8_storage``).
        state: the folder's tensors.
        source: the weights file, for messages.

    Raises:
        ValueError: the files do not describe the model they claim to.
    """
    from hybridformer.config import ConfigError, from_dict
    from hybridformer.models.multimodal_checkpoint import model_from_state
    from hybridformer.models.multimodal_config import MultimodalConfig

    try:
        config = from_dict(MultimodalConfig, meta.config)
    except ConfigError as err:
        raise ValueError(f"{source}: bad config: {err}") from None
    spec = QuantizationSpec.from_dict(meta.quantization, source)
    linears, table, state, _ = unpack_int8(state, spec, source, TABLE)
    stored: dict[str, Int8Weight] = {}
    try:
        for name in meta.extra.get("int8_storage", []):
            stored[name] = Int8Weight(state.pop(f"{name}.int8"), state.pop(f"{name}.scale"), None)
            state[name] = _restored(stored[name])
    except KeyError as err:
        raise ValueError(f"{source}: lacks {err}") from None
    model = model_from_state(config, state, source)
    model = quantize_multimodal(model, spec.mode, spec.backend, embeddings=spec.embeddings, inplace=True, _round=False)
    rebuilt = quantization_of(model)
    expected = {name for name, param in model.named_parameters() if is_stored_int8(name, param)}
    if rebuilt.linears != spec.linears or rebuilt.embeddings != spec.embeddings or set(stored) != expected:
        raise ValueError(f"{source}: the quantized layers saved differ from those of the rebuilt model")
    write_int8(model, spec, linears, table, TABLE)
    setattr(model, SPEC_ATTRIBUTE, spec)
    setattr(model, STORED_ATTRIBUTE, stored)
    return model
