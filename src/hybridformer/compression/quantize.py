"""int8 post-training quantization of a trained model, as an external transform (SPEC §8).

    from hybridformer.compression import quantize
    from hybridformer.registry import load_model, save_model

    model = load_model("runs/sentiment/model")
    q = quantize(model, mode="dynamic")        # int8 weights, activations quantized per call
    save_model(q, "runs/sentiment/int8")       # loads again with load_model

Which layers: every plain ``nn.Linear`` (attention projections, FFN, head, pooler) except those of
the FFN gates and of the attention's token scorer, which decide which groups and tokens are computed
(tiny layers whose decisions would shift under rounding); with ``embeddings=True`` also the word
embedding table (half of MiniLM's parameters), stored as per-row uint8. Gated FFNs get an int8
kernel that still computes only the open groups (:mod:`hybridformer.compression.int8_sparse`).

``mode="dynamic"`` computes in int8 (weights and per-call quantized activations); ``mode="weight"``
stores int8 weights and computes in float (smaller model, fp32-like accuracy, no speed-up on CPU).
``backend=None`` takes the fastest library measured on our CPU for the mode (docs/compression.md):
``ao`` (torch.ao ``quantize_dynamic``) for dynamic, ``torchao`` (the only weight-only one) for weight.

``smooth=alpha`` (with ``calibration`` batches) first applies SmoothQuant-style per-channel smoothing
(:mod:`hybridformer.compression.int8_smooth`): it moves activation outliers into the per-channel int8
weights, for torch.ao's per-tensor activation quantization. ``o_proj``'s input scale is then folded
into ``v_proj``'s int8 row scales (:mod:`hybridformer.compression.int8_fold`, exact). By default each
attention's q/k/v projections are fused into one Linear first (``fuse_qkv``,
:mod:`hybridformer.compression.int8_fuse`); the float model keeps them separate.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from hybridformer.attention.pooled import PooledSelection
from hybridformer.attention.scorer import TokenScorer
from hybridformer.compression.int8_backends import (
    Backend,
    Mode,
    backend_for,
    quantize_embedding,
    quiet_quantization_warnings,
)
from hybridformer.compression.int8_fold import fold_output_scales
from hybridformer.compression.int8_fuse import fuse_qkv as fuse_attention_qkv
from hybridformer.compression.int8_smooth import attach_input_scales, input_maxima, smooth_weights
from hybridformer.compression.int8_sparse import attach_group_kernels
from hybridformer.sparsity import SparseGate

__all__ = ["DEFAULT_BACKENDS", "QuantizationSpec", "quantize", "quantization_of"]

DEFAULT_BACKENDS: dict[str, Backend] = {"dynamic": "ao", "weight": "torchao"}
"""The backend ``backend=None`` picks per mode: the fastest on our CPU (docs/compression.md)."""

SPEC_ATTRIBUTE = "int8_quantization"
"""Where :func:`quantize` records its :class:`QuantizationSpec` on the model."""


@dataclass(frozen=True)
class QuantizationSpec:
    """How a model was quantized; saved with it, so loading rebuilds the same modules."""

    mode: Mode
    """``weight``: int8 weights, float compute; ``dynamic``: int8 weights and activations."""
    backend: Backend
    """``ao`` (torch.ao dynamic quantization) or ``torchao`` (torchao ``quantize_``)."""
    embeddings: bool
    """Whether the word-embedding table is stored as per-row uint8 too."""
    linears: tuple[str, ...]
    """Names of the quantized Linear layers (module paths)."""
    smooth: float | None = None
    """SmoothQuant's alpha if the layers' inputs were smoothed before quantization, else None."""
    fused_qkv: bool = False
    """Whether each attention's q/k/v projections were fused into one ``qkv_proj`` first."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "linears": list(self.linears)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> QuantizationSpec:
        """Read a saved spec, checking its fields."""
        try:
            smooth = data.get("smooth")
            spec = cls(data["mode"], data["backend"], bool(data["embeddings"]), tuple(data["linears"]),
                       None if smooth is None else float(smooth), bool(data.get("fused_qkv", False)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: malformed 'quantization' entry ({err})") from None
        backend_for(spec.backend, spec.mode)
        return spec


def quantization_of(model: nn.Module) -> QuantizationSpec | None:
    """The spec :func:`quantize` recorded on ``model``, or None for a float model."""
    return getattr(model, SPEC_ATTRIBUTE, None)


def _decision_layers(model: nn.Module) -> set[int]:
    """ids of the Linear layers that decide what is computed (FFN gates, attention token scorers, the
    pooling of the pooled selection, whose pooled queries rank the keys)."""
    ids = {id(layer) for module in model.modules() if isinstance(module, (SparseGate, TokenScorer)) for layer in module.modules()}
    ids |= {id(module.pool_proj) for module in model.modules() if isinstance(module, PooledSelection)}
    return ids


def quantize(
    model: nn.Module,
    mode: Mode = "dynamic",
    backend: Backend | None = None,
    *,
    embeddings: bool = True,
    inplace: bool = False,
    smooth: float | None = None,
    calibration: Iterable[Mapping[str, Any]] | None = None,
    fuse_qkv: bool = True,
) -> nn.Module:
    """int8-quantize the Linear layers (and the word embeddings) of a trained model for CPU inference.

    The result is for inference (eval mode, no autograd): the int8 modules have no backward.

    Args:
        model: a trained float model, e.g. a :class:`~hybridformer.models.TextClassifier`; on the CPU.
        mode: ``dynamic`` (int8 compute) or ``weight`` (int8 storage, float compute).
        backend: ``ao``, ``torchao`` or None for the fastest here (see :data:`DEFAULT_BACKENDS`).
        embeddings: also store the word-embedding table as per-row uint8 (a model with
            ``[encoder.]embeddings.word_embeddings``; ignored otherwise).
        inplace: change ``model`` itself; else a deep copy is quantized and ``model`` is left float.
        smooth: SmoothQuant's alpha in [0, 1] (0.5 is the paper's default): smooth the quantized
            layers' inputs per channel before quantizing; None: no smoothing.
        calibration: model input batches (e.g. a few collated training batches) on which the
            per-channel activation maxima are measured; required with ``smooth``.
        fuse_qkv: first fuse each attention's q/k/v projections into one Linear
            (:mod:`hybridformer.compression.int8_fuse`: one activation quantization and one smoothing
            product instead of three, a wider GEMM; the smoothing scale then is shared by q, k, v).

    Returns:
        The quantized model, in eval mode, with its :class:`QuantizationSpec` recorded.

    Raises:
        ValueError: unknown mode or backend, a mode the backend lacks, an already quantized model,
            a model off the CPU, ``smooth`` outside [0, 1] or without ``calibration``.
        ImportError: ``backend="torchao"`` without torchao installed.
    """
    chosen = backend if backend is not None else DEFAULT_BACKENDS.get(mode, "ao")
    adapter = backend_for(chosen, mode)
    if quantization_of(model) is not None:
        raise ValueError("model: already quantized; quantize the float model")
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"model: int8 kernels run on the CPU; move the model there first (found {sorted(devices)})")
    if smooth is not None and calibration is None:
        raise ValueError("calibration: smoothing (smooth=alpha) needs calibration batches")
    if smooth is not None and not 0.0 <= smooth <= 1.0:
        raise ValueError(f"smooth: alpha must be in [0, 1], got {smooth}")
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    fused = fuse_qkv and fuse_attention_qkv(target) > 0
    skip = _decision_layers(target)
    before = {name for name, m in target.named_modules() if type(m) is nn.Linear and id(m) not in skip}
    scales = {}
    if smooth is not None:
        scales = smooth_weights(target, input_maxima(target, sorted(before), calibration), smooth)
    with quiet_quantization_warnings():
        adapter.quantize(target, mode, lambda name, layer: id(layer) not in skip)
        embedded = embeddings and _quantize_word_embeddings(target)
        attach_input_scales(target, scales)  # on the int8 layers (torch.ao swapped the modules)
        fold_output_scales(target, adapter)  # o_proj's scale into v_proj's rows: exact, one product less
        attach_group_kernels(target, adapter, mode)
    linears = tuple(sorted(name for name, m in target.named_modules() if name in before and adapter.is_quantized(m)))
    setattr(target, SPEC_ATTRIBUTE, QuantizationSpec(mode, chosen, embedded, linears, smooth, fused))
    return target


def _quantize_word_embeddings(model: nn.Module) -> bool:
    """Swap the (encoder's) ``embeddings.word_embeddings`` for a per-row uint8 table; False if there is none."""
    embeddings = getattr(getattr(model, "encoder", model), "embeddings", None)
    table = getattr(embeddings, "word_embeddings", None)
    if type(table) is not nn.Embedding:
        return False
    embeddings.word_embeddings = quantize_embedding(table)
    return True
