"""int8 for the multimodal model: int8 compute for its Linear layers, int8 storage for the rest.

:func:`quantize_multimodal` applies :func:`~hybridformer.compression.quantize` to a
:class:`~hybridformer.models.MultimodalModel` (every Linear of the text encoder, the fusion layers,
the decoder and the heads, except the token scorers and FFN gates, which decide what is computed) and
stores the text encoder's word table as per-row uint8, as for a classifier. What has no int8 kernel
on our CPU stays float in compute but is stored int8 (:func:`is_stored_int8`): the image and video trunks'
convolution kernels and the decoder's token table, which is also its output projection (tied), are
rounded to symmetric per-row int8 (one scale per output channel or token) in place, so the model in
memory computes exactly what it computes after saving and loading.

A folder holds ``hybridformer.json`` (the multimodal config, a ``quantization`` entry and the
``int8_storage`` names) and ``model.int8.safetensors``:

- per int8 Linear ``<name>.weight.int8``, ``<name>.weight.scale`` and ``<name>.bias``;
- the word table ``<table>.weight.uint8``, ``.weight.scale``, ``.weight.zero_point``;
- per stored tensor ``<name>.int8`` (rows, ...) and ``<name>.scale`` (rows,);
- every other tensor as float under its usual name.

``MultimodalModel.from_pretrained`` recognises the folder, so ``generate``, ``serve`` and the
multimodal evaluation read it unchanged. Loading never unpickles: the model is built from its config,
quantized the same way, and the stored int8 values are written into it exactly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from hybridformer.config import to_dict
from hybridformer.compression.int8_backends import (
    Backend,
    Int8Weight,
    Mode,
    backend_for,
    quantize_embedding,
    quiet_quantization_warnings,
)
from hybridformer.compression.int8_tensors import WEIGHTS_FILE, pack_int8, unpack_int8, write_int8
from hybridformer.compression.quantize import SPEC_ATTRIBUTE, QuantizationSpec, quantization_of, quantize
from hybridformer.io import atomic_write, write_json

if TYPE_CHECKING:
    from hybridformer.models.multimodal import MultimodalModel

__all__ = [
    "is_multimodal_folder",
    "is_stored_int8",
    "load_quantized_multimodal",
    "quantize_multimodal",
    "quantize_multimodal_folder",
    "save_quantized_multimodal",
    "stored_int8",
]

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


def save_quantized_multimodal(model: MultimodalModel, path: str | Path, tokenizer: Any = None) -> Path:
    """Write an int8 multimodal model (and optionally its tokenizer) into the folder ``path``.

    Raises:
        ValueError: the model is not quantized.
    """
    from hybridformer.models.multimodal_checkpoint import ARCHITECTURE, CONFIG_FILE, FORMAT_VERSION

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
    meta = {"architecture": ARCHITECTURE, "format_version": FORMAT_VERSION, "config": to_dict(model.config),
            "quantization": spec.to_dict(), "int8_storage": sorted(stored)}
    folder = Path(path)
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    write_json(folder / CONFIG_FILE, meta)  # last: a folder with a config has its weights
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder


def load_quantized_multimodal(path: str | Path) -> MultimodalModel:
    """Rebuild the int8 multimodal model saved in ``path`` (the same outputs, bit for bit).

    Raises:
        FileNotFoundError: files missing; ValueError: the files do not describe the model they claim to.
    """
    from hybridformer.models.multimodal_checkpoint import CONFIG_FILE, model_from_state, read_config, read_weights

    folder = Path(path)
    config = read_config(folder)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    source = str(folder / CONFIG_FILE)
    spec = QuantizationSpec.from_dict(meta["quantization"], source)
    weights = folder / WEIGHTS_FILE
    linears, table, state, _ = unpack_int8(read_weights(weights), spec, str(weights), TABLE)
    stored: dict[str, Int8Weight] = {}
    try:
        for name in meta.get("int8_storage", []):
            stored[name] = Int8Weight(state.pop(f"{name}.int8"), state.pop(f"{name}.scale"), None)
            state[name] = _restored(stored[name])
    except KeyError as err:
        raise ValueError(f"{weights}: lacks {err}") from None
    model = model_from_state(config, state, str(weights))
    model = quantize_multimodal(model, spec.mode, spec.backend, embeddings=spec.embeddings, inplace=True, _round=False)
    rebuilt = quantization_of(model)
    expected = {name for name, param in model.named_parameters() if is_stored_int8(name, param)}
    if rebuilt.linears != spec.linears or rebuilt.embeddings != spec.embeddings or set(stored) != expected:
        raise ValueError(f"{source}: the quantized layers saved differ from those of the rebuilt model")
    write_int8(model, spec, linears, table, TABLE)
    setattr(model, SPEC_ATTRIBUTE, spec)
    setattr(model, STORED_ATTRIBUTE, stored)
    return model


def is_multimodal_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a saved multimodal model (float or int8)."""
    from hybridformer.models.multimodal_checkpoint import ARCHITECTURE, CONFIG_FILE

    file = Path(path) / CONFIG_FILE
    try:
        return file.is_file() and json.loads(file.read_text()).get("architecture") == ARCHITECTURE
    except (json.JSONDecodeError, AttributeError):
        return False


def quantize_multimodal_folder(
    model_dir: str | Path, out_dir: str | Path, mode: Mode = "dynamic", backend: Backend | None = None,
    *, embeddings: bool = True,
):
    """Load the float multimodal model of ``model_dir``, quantize it, save it with its tokenizer to
    ``out_dir``; a :class:`~hybridformer.compression.QuantizeFolderReport`.

    Raises:
        FileNotFoundError: no model folder; ValueError: already int8, a bad mode or backend.
    """
    from hybridformer.compression.int8_format import QuantizeFolderReport
    from hybridformer.compression.quantize import DEFAULT_BACKENDS
    from hybridformer.models.multimodal import MultimodalModel
    from hybridformer.models.multimodal_checkpoint import CONFIG_FILE
    from hybridformer.models.multimodal_checkpoint import WEIGHTS_FILE as FLOAT_WEIGHTS
    from hybridformer.models.prompt_format import decoder_prompt_format, read_prompt_format, save_prompt_format

    backend_for(backend or DEFAULT_BACKENDS.get(mode, "ao"), mode)  # bad flags fail before any loading
    if "quantization" in json.loads((Path(model_dir) / CONFIG_FILE).read_text()):
        raise ValueError(f"--model: {model_dir} is already int8; quantize the float model")
    from hybridformer.recipes.model import resolve_tokenizer

    model = MultimodalModel.from_pretrained(model_dir)
    tokenizer = resolve_tokenizer(None, model_dir)  # the folder's, else MiniLM's (what loading it falls back to)
    quantized = quantize_multimodal(model, mode, backend, embeddings=embeddings, inplace=True)
    out = save_quantized_multimodal(quantized, out_dir, tokenizer)
    decoder = model.config.decoder  # the int8 model is asked and decoded as the float one was
    save_prompt_format(out, read_prompt_format(model_dir, decoder_prompt_format(tokenizer, decoder)), decoder)
    return QuantizeFolderReport(
        quantization_of(quantized), (Path(model_dir) / FLOAT_WEIGHTS).stat().st_size,
        (out / WEIGHTS_FILE).stat().st_size, out,
    )
