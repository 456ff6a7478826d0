"""Deployment (SPEC §8): int8 quantization and distillation of trained models, and serving a trained
model over HTTP (``deploy.serve``).

    from hybridformer.compression import quantize, save_quantized
    q = quantize(model, mode="dynamic")      # or mode="weight"; backend="ao" | "torchao"
    save_quantized(q, "runs/int8")           # TextClassifier.from_pretrained("runs/int8") loads it
    q = quantize_multimodal(mm_model)        # int8 Linears; convolutions and token table stored int8
    save_quantized(q, "runs/mm-int8")        # MultimodalModel.from_pretrained("runs/mm-int8") loads it
"""

from hybridformer.compression.int8_backends import BACKENDS, Int8Weight
from hybridformer.compression.int8_format import (
    INT8_WEIGHTS_FILE,
    QuantizeFolderReport,
    is_quantized_folder,
    load_quantized,
    quantize_folder,
    save_quantized,
)
from hybridformer.compression.int8_multimodal import quantize_multimodal, quantize_multimodal_folder
from hybridformer.compression.int8_sparse import Int8GroupKernel, attach_group_kernels
from hybridformer.compression.quantize import DEFAULT_BACKENDS, QuantizationSpec, quantization_of, quantize

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKENDS",
    "INT8_WEIGHTS_FILE",
    "Int8GroupKernel",
    "Int8Weight",
    "QuantizationSpec",
    "QuantizeFolderReport",
    "attach_group_kernels",
    "is_quantized_folder",
    "load_quantized",
    "quantization_of",
    "quantize",
    "quantize_folder",
    "quantize_multimodal",
    "quantize_multimodal_folder",
    "save_quantized",
]
