"""Tensor parallelism refuses, with the block's name, what it cannot split by heads."""

from __future__ import annotations

import pytest

from hybridformer.attention import AttentionConfig
from hybridformer.distributed.parallelize import check_selection


@pytest.mark.parametrize("selection", ["pooled", "compressed"])
def test_selections_ranked_over_all_heads_are_refused_under_tp(selection):
    extra = {"compress_block": 4, "global_k": 8} if selection == "compressed" else {}
    config = AttentionConfig(d_model=64, n_heads=4, window=16, selection=selection, **extra)
    with pytest.raises(ValueError, match=rf"parallel.tp: encoder.layers.0 uses selection='{selection}'.*got tp=2"):
        check_selection("encoder.layers.0", config, 2)
    check_selection("encoder.layers.0", config, 1)  # no tensor parallelism: nothing to refuse
    check_selection("encoder.layers.0", AttentionConfig(d_model=64, n_heads=4, window=16), 2)  # the scorer splits
