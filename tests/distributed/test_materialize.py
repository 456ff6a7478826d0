"""materialize() in one process: a meta-device build allocated and initialised equals the eager build."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import toy  # noqa: E402

from hybridformer.distributed.parallelize import materialize  # noqa: E402


def test_meta_build_materialised_equals_the_eager_build():
    eager = toy.memory_model(seed=3)
    with torch.device("meta"):
        model = toy.memory_model(seed=3)
    assert all(p.is_meta for p in model.parameters())
    materialize(model, "cpu", seed=3)
    for (name, got), want in zip(model.state_dict().items(), eager.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)


def test_materialize_needs_init_weights():
    with pytest.raises(ValueError, match="has no init_weights"):
        materialize(torch.nn.Linear(2, 2, device="meta"), "cpu", seed=0)
