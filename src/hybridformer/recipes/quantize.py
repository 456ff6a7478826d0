"""The job behind ``hybridformer quantize``: load a float model folder, int8 it, save the int8 folder.

The model's architecture (from the registry) picks the transform: a classifier goes through
:func:`~hybridformer.compression.quantize` (optionally smoothed on calibration batches), a multimodal
model through :func:`~hybridformer.compression.quantize_multimodal`. The float folder's other files
(tokenizer, chat template, generation config, training data record) are copied into the int8 folder
unchanged; a folder without a tokenizer gets MiniLM's, and a multimodal one without a prompt format
the decoder's default (what loading the float folder falls back to).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from hybridformer.compression import DEFAULT_BACKENDS, QuantizationSpec, quantization_of, quantize, quantize_multimodal
from hybridformer.compression.int8_backends import Backend, Mode, backend_for
from hybridformer.data import TextCollator, iterate_batches
from hybridformer.data.tokenizer import has_tokenizer, resolve_tokenizer
from hybridformer.models.prompt_format import decoder_prompt_format, read_prompt_format, save_prompt_format
from hybridformer.model_folder import WEIGHTS_FILE, copy_extras, read_meta
from hybridformer.recipes.task_data import load_task_data
from hybridformer.registry import architecture_at, load_model, save_model

__all__ = ["QuantizeFolderReport", "quantize_folder", "smoothing_batches"]


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
    architecture: str = "TextClassifier"
    """The model's architecture."""

    @property
    def ratio(self) -> float:
        """int8 size / float size."""
        return self.int8_bytes / self.float_bytes


def quantize_folder(
    model_dir: str | Path, out_dir: str | Path, mode: Mode = "dynamic", backend: Backend | None = None,
    *, embeddings: bool = True, smooth: float | None = None, calibration: Any = None, calibration_batches: int = 8,
    fuse_qkv: bool = True,
) -> QuantizeFolderReport:
    """Load the float model of ``model_dir``, quantize it, save it to ``out_dir`` with the folder's other files.

    With ``smooth`` (SmoothQuant's alpha, classifiers only) the activation maxima are calibrated on
    ``calibration_batches`` batches of 16 training examples of ``calibration`` (a
    :class:`~hybridformer.recipes.task_data.TaskDataConfig`, e.g. the model's fine-tuning task).
    ``fuse_qkv``: one int8 layer for each attention's q/k/v (classifiers; the multimodal format keeps them apart).

    Raises:
        FileNotFoundError: no model folder; ValueError: already int8, an architecture without an int8
            form, bad mode or backend, ``smooth`` without ``calibration`` or on a multimodal model.
    """
    backend_for(backend or DEFAULT_BACKENDS.get(mode, "ao"), mode)  # bad flags fail before any loading
    arch = architecture_at(model_dir)
    if arch.pack_int8 is None:
        raise ValueError(f"--model: {model_dir} holds a {arch.name}; quantize takes a classifier or a multimodal model")
    if read_meta(model_dir).quantization is not None:
        raise ValueError(f"--model: {model_dir} is already int8; quantize the float model")
    model = load_model(model_dir)
    if arch.family == "multimodal":
        if smooth is not None:
            raise ValueError("--smooth: smoothing is calibrated on text-classification batches; a multimodal model "
                             "is quantized without it")
        quantized = quantize_multimodal(model, mode, backend, embeddings=embeddings, inplace=True)
    else:
        if smooth is not None and calibration is None:
            raise ValueError("--smooth: needs calibration data (--data.task TASK, or --data.task file --data.train_file F)")
        batches = None
        if smooth is not None:
            batches = smoothing_batches(calibration, resolve_tokenizer(None, model_dir), calibration_batches)
        quantized = quantize(model, mode, backend, embeddings=embeddings, inplace=True, smooth=smooth,
                             calibration=batches, fuse_qkv=fuse_qkv)
    out = save_model(quantized, out_dir)
    copy_extras(model_dir, out)
    if not has_tokenizer(out):  # what loading the float folder falls back to: MiniLM's
        resolve_tokenizer(None).save_pretrained(str(out))
    if arch.family == "multimodal":  # asked and decoded as the float model was (its template, else the default)
        decoder = model.config.decoder
        default = decoder_prompt_format(resolve_tokenizer(None, model_dir), decoder)
        save_prompt_format(out, read_prompt_format(model_dir, default), decoder)
    return QuantizeFolderReport(
        quantization_of(quantized), (Path(model_dir) / WEIGHTS_FILE).stat().st_size,
        (out / WEIGHTS_FILE).stat().st_size, out, arch.name,
    )


def smoothing_batches(
    data: Any, tokenizer: Any, n_batches: int = 8, batch_size: int = 16, seed: int = 0
) -> list[Mapping[str, Tensor]]:
    """``n_batches`` collated batches of a task's training split (a seeded pick), for SmoothQuant's activation maxima.

    Args:
        data: a :class:`~hybridformer.recipes.task_data.TaskDataConfig` (task, files, ``max_length``).
        tokenizer: the model's tokenizer.
        n_batches: batches to calibrate on (8 x 16 examples: the maxima settle within a few).
        batch_size: examples per batch.
        seed: which training examples are picked.

    Raises:
        ValueError: ``n_batches`` < 1.
    """
    if n_batches < 1:
        raise ValueError(f"calibration_batches: must be >= 1, got {n_batches}")
    train = load_task_data(data).train
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: n_batches * batch_size]
    picks = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return list(iterate_batches(train, TextCollator(tokenizer, max_length=data.max_length), picks))
