"""The int8 classifier's tensors: what a folder of the one format (:mod:`hybridformer.model_folder`) holds
for a quantized :class:`~hybridformer.models.TextClassifier`, and how it is rebuilt.

``hybridformer.json`` is the classifier's usual one plus a ``quantization`` entry (mode, backend, the
quantized layers); ``model.safetensors`` holds:

- per quantized Linear ``<name>.weight.int8`` (out, in) int8, ``<name>.weight.scale`` (out,) and
  ``<name>.bias``; with smoothing also ``<name>.input_scale`` (in,), the 1/s its input is multiplied by;
- for the word embeddings ``<name>.weight.uint8``, ``<name>.weight.scale``, ``<name>.weight.zero_point``;
- every other tensor (norms, position embeddings, gates, scorers) as float, under its usual name.

With ``fused_qkv`` (the default) each attention's q/k/v are one int8 layer ``<attention>.qkv_proj``.

Loading never unpickles anything: the classifier is built from the config, quantized the same way
(so the modules are the library's), and the stored int8 values and scales are written into them
exactly, so a loaded model computes what the saved one did. ``hybridformer.registry`` writes and reads
the folder (``save_model``, ``load_model``) through :func:`pack_classifier` and :func:`load_classifier`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from hybridformer.compression.int8_backends import backend_for, quiet_quantization_warnings
from hybridformer.compression.int8_fuse import split_qkv_state
from hybridformer.compression.int8_smooth import attach_input_scales
from hybridformer.compression.int8_sparse import attach_group_kernels
from hybridformer.compression.int8_tensors import pack_int8, unpack_int8, write_int8
from hybridformer.compression.quantize import SPEC_ATTRIBUTE, QuantizationSpec, quantization_of, quantize
from hybridformer.encoders.text_checkpoint import checkpoint_of
from hybridformer.model_folder import FolderMeta
from hybridformer.models import TextClassifier

__all__ = ["load_classifier", "pack_classifier"]

_EMBEDDING = "encoder.embeddings.word_embeddings"


def pack_classifier(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(the tensors to save, extra ``hybridformer.json`` entries) of an int8 classifier.

    Raises:
        ValueError: the model is not quantized, or is not a TextClassifier.
    """
    spec = quantization_of(model)
    if spec is None:
        raise ValueError("model: not quantized; call hybridformer.compression.quantize(model) first")
    if not isinstance(model, TextClassifier):
        raise ValueError(f"model: expected an int8 TextClassifier, got {type(model).__name__}")
    return pack_int8(model, spec, _EMBEDDING), {}


def load_classifier(meta: FolderMeta, state: dict[str, Tensor], source: str, **overrides: Any) -> nn.Module:
    """Rebuild the int8 classifier of a folder (overrides as in ``TextClassifier.from_pretrained``).

    Args:
        meta: the folder's ``hybridformer.json`` (with its ``quantization``).
        state: the folder's tensors.
        source: the folder, for messages.

    Raises:
        ValueError: the files do not describe the model they claim to.
    """
    spec = QuantizationSpec.from_dict(meta.quantization, source)
    linears, table, float_state, scales = unpack_int8(state, spec, source, _EMBEDDING)
    checkpoint = checkpoint_of(FolderMeta(meta.architecture, meta.config), float_state, source)
    if spec.fused_qkv:  # the float model has q/k/v; quantize fuses them again below
        checkpoint.encoder_state = split_qkv_state(checkpoint.encoder_state)
    model = TextClassifier.from_checkpoint(checkpoint, **overrides)
    adapter = backend_for(spec.backend, spec.mode)
    model = quantize(model, spec.mode, spec.backend, embeddings=spec.embeddings, inplace=True,
                     fuse_qkv=spec.fused_qkv)
    rebuilt = quantization_of(model)
    if rebuilt.linears != spec.linears or rebuilt.embeddings != spec.embeddings:
        raise ValueError(f"{source}: the quantized layers saved differ from those of the rebuilt model")
    write_int8(model, spec, linears, table, _EMBEDDING)
    with quiet_quantization_warnings():
        attach_input_scales(model, scales)
        attach_group_kernels(model, adapter, spec.mode)  # from the stored int8 values (and input scales)
    setattr(model, SPEC_ATTRIBUTE, spec)
    return model
