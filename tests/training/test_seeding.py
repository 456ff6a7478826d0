"""One seed for a run: seed_everything before the build, and deterministic kernels on request."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from hybridformer.losses import ClassificationObjective
from hybridformer.training import TrainConfig, Trainer, seed_everything, use_deterministic


def test_seed_everything_repeats_every_generator() -> None:
    draws = []
    for _ in range(2):
        seed_everything(7)
        draws.append((torch.rand(3).tolist(), random.random(), float(np.random.rand())))
    assert draws[0] == draws[1]
    seed_everything(8)
    assert torch.rand(3).tolist() != draws[0][0]


@pytest.fixture
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_deterministic_runs_repeat_and_switch_torch_to_deterministic_kernels(
    tmp_path, tiny_data, tiny_classifier, collate, deterministic
) -> None:
    runs = []
    for name in ("a", "b"):
        seed_everything(5)  # the recipes' order: seed, then build
        model = tiny_classifier()
        config = TrainConfig(lr=1e-2, max_steps=4, batch_size=8, out_dir=str(tmp_path / name), seed=5,
                             deterministic=True, tensorboard=False, progress_bar=False, log_every=1)
        runs.append(Trainer(model, ClassificationObjective(), tiny_data, config, collate).fit().losses)
        assert torch.are_deterministic_algorithms_enabled()
    assert runs[0] == runs[1] and len(set(runs[0])) > 1
    use_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
