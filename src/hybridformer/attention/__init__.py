"""Hybrid local + global attention (SPEC §2)."""

from hybridformer.attention.config import AttentionConfig
from hybridformer.attention.dense import dense_attention
from hybridformer.attention.dispatch import ATTENTION_BACKENDS, hybrid_attention, register_backend
from hybridformer.attention.cache import KVCache
from hybridformer.attention.hybrid import AttentionOutput, HybridAttention
from hybridformer.attention.masks import MaskSpec
from hybridformer.attention.reference import all_keys_mask, dense_mask, reference_attention

__all__ = [
    "AttentionConfig",
    "hybrid_attention",
    "dense_attention",
    "register_backend",
    "MaskSpec",
    "ATTENTION_BACKENDS",
    "reference_attention",
    "dense_mask",
    "all_keys_mask",
    "HybridAttention",
    "AttentionOutput",
    "KVCache",
]
