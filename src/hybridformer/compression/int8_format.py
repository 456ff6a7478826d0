"""Saving and loading int8 classifiers: int8 values, scales and the float config, in safetensors.

A quantized folder holds ``hybridformer.json`` (the classifier's usual config plus a
``quantization`` entry: mode, backend, the quantized layers) and ``model.int8.safetensors``:

- per quantized Linear ``<name>.weight.int8`` (out, in) int8, ``<name>.weight.scale`` (out,) and
  ``<name>.bias``; with smoothing also ``<name>.input_scale`` (in,), the 1/s its input is multiplied by;
- for the word embeddings ``<name>.weight.uint8``, ``<name>.weight.scale``, ``<name>.weight.zero_point``;
- every other tensor (norms, position embeddings, gates, scorers) as float, under its usual name.

With ``fused_qkv`` (the default) each attention's q/k/v are one int8 layer ``<attention>.qkv_proj``.

Loading never unpickles anything: the classifier is built from the config, quantized the same way
(so the modules are the library's), and the stored int8 values and scales are written into them
exactly, so a loaded model computes what the saved one did. ``TextClassifier.from_pretrained``
recognises such a folder, so ``hybridformer evaluate --model-dir <int8 folder>`` works unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from hybridformer.config import from_dict, to_dict
from hybridformer.compression.int8_backends import Backend, Mode, backend_for, quiet_quantization_warnings
from hybridformer.compression.int8_fuse import split_qkv_state
from hybridformer.compression.int8_multimodal import save_quantized_multimodal
from hybridformer.compression.int8_smooth import attach_input_scales
from hybridformer.compression.int8_smooth import calibration_batches as smoothing_batches
from hybridformer.compression.int8_sparse import attach_group_kernels
from hybridformer.compression.int8_tensors import WEIGHTS_FILE as INT8_WEIGHTS_FILE
from hybridformer.compression.int8_tensors import pack_int8, unpack_int8, write_int8
from hybridformer.compression.quantize import (
    DEFAULT_BACKENDS,
    SPEC_ATTRIBUTE,
    QuantizationSpec,
    quantization_of,
    quantize,
)
from hybridformer.encoders.text_checkpoint import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, TextCheckpoint
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.io import atomic_write, write_json

__all__ = [
    "INT8_WEIGHTS_FILE",
    "QuantizeFolderReport",
    "is_quantized_folder",
    "load_quantized",
    "quantize_folder",
    "save_quantized",
]

_EMBEDDING = "encoder.embeddings.word_embeddings"


def is_quantized_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`save_quantized`."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return "quantization" in json.loads(config.read_text())
    except json.JSONDecodeError:
        return False


def save_quantized(model: nn.Module, path: str | Path) -> Path:
    """Write a classifier quantized by :func:`~hybridformer.compression.quantize` to the folder ``path``.

    Raises:
        ValueError: the model is not quantized, or is not a TextClassifier.
    """
    from hybridformer.models import MultimodalModel, TextClassifier

    spec = quantization_of(model)
    if spec is None:
        raise ValueError("model: not quantized; call hybridformer.compression.quantize(model) first")
    if isinstance(model, MultimodalModel):
        return save_quantized_multimodal(model, path)
    if not isinstance(model, TextClassifier):
        raise ValueError(f"model: saving int8 models covers TextClassifier and MultimodalModel, got {type(model).__name__}")
    tensors = pack_int8(model, spec, _EMBEDDING)
    meta = {
        "format": "hybridformer",
        "format_version": FORMAT_VERSION,
        "architecture": "TextClassifier",
        "encoder_prefix": "encoder.",
        "encoder": to_dict(model.encoder.config),
        "num_labels": model.num_labels,
        "pooling": model.head.pooling,
        "dropout": model.dropout,
        "label_names": model.label_names,
        "quantization": spec.to_dict(),
    }
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / INT8_WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    write_json(path / CONFIG_FILE, meta)
    return path


def _read(path: Path) -> tuple[dict[str, Any], QuantizationSpec, dict[str, Tensor]]:
    meta = json.loads((path / CONFIG_FILE).read_text())
    spec = QuantizationSpec.from_dict(meta["quantization"], str(path / CONFIG_FILE))
    weights = path / INT8_WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: missing {INT8_WEIGHTS_FILE}")
    return meta, spec, load_file(weights)


def load_quantized(path: str | Path, **overrides: Any) -> nn.Module:
    """Rebuild the int8 classifier saved in ``path`` (overrides as in ``TextClassifier.from_pretrained``).

    Raises:
        FileNotFoundError: the folder or its files are missing.
        ValueError: the files do not describe the model they claim to.
    """
    from hybridformer.models import TextClassifier

    path = Path(path)
    meta, spec, state = _read(path)
    source = str(path)
    linears, table, float_state, scales = unpack_int8(state, spec, source, _EMBEDDING)
    config = from_dict(TextEncoderConfig, meta["encoder"], prefix="encoder.")
    prefix = meta["encoder_prefix"]
    encoder_state = {k[len(prefix) :]: v for k, v in float_state.items() if k.startswith(prefix)}
    others = {k: v for k, v in float_state.items() if not k.startswith(prefix)}
    if spec.fused_qkv:  # the float model has q/k/v; quantize fuses them again below
        encoder_state = split_qkv_state(encoder_state)
    model = TextClassifier.from_checkpoint(TextCheckpoint(config, encoder_state, others, meta, source), **overrides)
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


@dataclass
class QuantizeFolderReport:
    """What :func:`quantize_folder` did."""

    spec: QuantizationSpec
    """How the model was quantized."""
    float_bytes: int
    """Size of the float model's weights file."""
    int8_bytes: int
    """Size of the int8 weights file."""
    out_dir: Path
    """The int8 folder."""

    @property
    def ratio(self) -> float:
        """int8 size / float size."""
        return self.int8_bytes / self.float_bytes


def quantize_folder(
    model_dir: str | Path, out_dir: str | Path, mode: Mode = "dynamic", backend: Backend | None = None,
    *, embeddings: bool = True, smooth: float | None = None, calibration: Any = None, calibration_batches: int = 8,
    fuse_qkv: bool = True,
) -> QuantizeFolderReport:
    """Load the float classifier of ``model_dir``, quantize it, save it with its tokenizer to ``out_dir``.

    With ``smooth`` (SmoothQuant's alpha) the activation maxima are calibrated on
    ``calibration_batches`` batches of 16 training examples of ``calibration`` (a
    :class:`~hybridformer.recipes.task_data.TaskDataConfig`, e.g. the model's fine-tuning task).
    ``fuse_qkv``: one int8 layer for each attention's q/k/v (see :func:`~hybridformer.compression.quantize`).

    Raises:
        FileNotFoundError: no model folder; ValueError: not a float classifier, bad mode or backend,
            ``smooth`` without ``calibration``.
    """
    from hybridformer.models import TextClassifier
    from hybridformer.recipes.model import resolve_tokenizer

    backend_for(backend or DEFAULT_BACKENDS.get(mode, "ao"), mode)  # bad flags fail before any loading
    if is_quantized_folder(model_dir):
        raise ValueError(f"--model: {model_dir} is already int8; quantize the float model")
    if smooth is not None and calibration is None:
        raise ValueError("--smooth: needs calibration data (--data.task TASK, or --data.task file --data.train_file F)")
    model = TextClassifier.from_pretrained(model_dir)
    tokenizer = resolve_tokenizer(None, model_dir)
    batches = None if smooth is None else smoothing_batches(calibration, tokenizer, calibration_batches)
    quantized = quantize(model, mode, backend, embeddings=embeddings, inplace=True, smooth=smooth, calibration=batches,
                         fuse_qkv=fuse_qkv)
    out = save_quantized(quantized, out_dir)
    tokenizer.save_pretrained(str(out))
    return QuantizeFolderReport(
        quantization_of(quantized), (Path(model_dir) / WEIGHTS_FILE).stat().st_size,
        (out / INT8_WEIGHTS_FILE).stat().st_size, out,
    )
