"""Crash-safe checkpoint writes, keep-last rotation, weights_only loading and RNG round trips."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

import hybridformer.training.checkpoint as ckpt


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    first = _model(0)
    ckpt.save_checkpoint(tmp_path, 1, first, {"step": 1})

    def dies_midway(state, path):  # the state file is half written, then the process "dies"
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", dies_midway)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 2, _model(1), {"step": 2})
    monkeypatch.undo()

    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000001"
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]  # no partial folder left behind
    restored = _model(5)
    state = ckpt.load_training_state(tmp_path / "step-00000001", restored)
    assert state == {"step": 1}
    for a, b in zip(restored.parameters(), first.parameters()):
        assert torch.equal(a, b)


def test_killed_save_leftover_is_ignored_and_cleaned(tmp_path):
    ckpt.save_checkpoint(tmp_path, 1, _model(0), {"step": 1})
    leftover = tmp_path / ".step-00000002.tmp-12345"  # what a SIGKILL mid-save leaves
    leftover.mkdir()
    (leftover / ckpt.MODEL_FILE).write_bytes(b"trunc")
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000001"
    ckpt.save_checkpoint(tmp_path, 3, _model(0), {"step": 3})
    assert not leftover.exists()


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "model.safetensors"
    ckpt.save_model_weights(_model(0), target)
    before = target.read_bytes()

    def boom(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        ckpt.atomic_write(target, boom)
    assert target.read_bytes() == before and list(tmp_path.iterdir()) == [target]
    model = _model(9)
    ckpt.load_model_weights(model, target)
    assert torch.equal(model[0].weight, _model(0)[0].weight)


def test_keep_last_and_resave(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, step, _model(step), {"step": step}, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    ckpt.save_checkpoint(tmp_path, 4, _model(7), {"step": 44}, keep_last=2)
    assert ckpt.load_training_state(tmp_path / "step-00000004", _model(0)) == {"step": 44}


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    random.gauss(0, 1)
    state = ckpt.rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), random.gauss(0, 1), np.random.randn(2))
    torch.manual_seed(100)
    random.seed(100)
    np.random.seed(100)
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), random.random(), random.gauss(0, 1), np.random.randn(2))
    assert torch.equal(got[0], expected[0]) and got[1:3] == expected[1:3]
    np.testing.assert_array_equal(got[3], expected[3])


def test_bad_checkpoint_paths(tmp_path):
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        ckpt.load_training_state(tmp_path, _model(0))
    with pytest.raises(ValueError, match="no weights file"):
        ckpt.load_model_weights(_model(0), tmp_path / "missing.safetensors")
    ckpt.save_model_weights(nn.Linear(2, 3), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="does not fit this model"):
        ckpt.load_model_weights(_model(0), tmp_path / "other.safetensors")
