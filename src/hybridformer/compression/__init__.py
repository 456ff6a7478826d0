"""Compression (SPEC §8): int8 quantization of trained models as external transforms, a library.

    from hybridformer.compression import quantize, quantize_multimodal
    from hybridformer.registry import save_model, load_model
    q = quantize(model, mode="dynamic")      # or mode="weight"; backend="ao" | "torchao"
    save_model(q, "runs/int8")               # load_model("runs/int8") rebuilds it
    q = quantize_multimodal(mm_model)        # int8 Linears; convolutions and token table stored int8

It imports nothing above the models: the jobs that use it (quantize a folder, distill a student) are
recipes, and the folder format is :mod:`hybridformer.model_folder`'s.
"""

from hybridformer.compression.int8_backends import BACKENDS, Int8Weight
from hybridformer.compression.int8_format import load_classifier, pack_classifier
from hybridformer.compression.int8_multimodal import load_multimodal_int8, pack_multimodal, quantize_multimodal
from hybridformer.compression.int8_sparse import Int8GroupKernel, attach_group_kernels
from hybridformer.compression.quantize import DEFAULT_BACKENDS, QuantizationSpec, quantization_of, quantize

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKENDS",
    "Int8GroupKernel",
    "Int8Weight",
    "QuantizationSpec",
    "attach_group_kernels",
    "load_classifier",
    "load_multimodal_int8",
    "pack_classifier",
    "pack_multimodal",
    "quantization_of",
    "quantize",
    "quantize_multimodal",
]
