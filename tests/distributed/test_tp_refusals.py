"""Tensor parallelism refuses, with the block's name, what it cannot split by heads."""

from __future__ import annotations

import pytest

from hybridformer.attention import AttentionConfig
from hybridformer.distributed.parallelize import check_selection


def test_compressed_selection_is_refused_under_tp():
    config = AttentionConfig(d_model=64, n_heads=4, window=16, selection="compressed", compress_block=4, global_k=8)
    with pytest.raises(ValueError, match=r"parallel.tp: encoder.layers.0 uses selection='compressed'.*got tp=2"):
        check_selection("encoder.layers.0", config, 2)
    check_selection("encoder.layers.0", config, 1)  # no tensor parallelism: nothing to refuse
    for selection in ("pooled", "scorer"):  # split by heads (tests/distributed/test_parallel.py)
        check_selection("encoder.layers.0", AttentionConfig(d_model=64, n_heads=4, window=16, selection=selection), 2)
