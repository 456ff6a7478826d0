"""ITC: the loss against a hand-computed float64 loop, the clamped learnable temperature, and the
all-gather under torchrun with two gloo processes against the single-process loss."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hybridformer.losses import ContrastiveConfig, ContrastiveObjective, contrastive_loss


def _by_hand(images, texts, t):
    n = len(images)
    total = 0.0
    for i in range(n):
        row = [float(images[i] @ texts[j]) / t for j in range(n)]
        col = [float(texts[i] @ images[j]) / t for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(v) for v in row))
        total += -col[i] + math.log(sum(math.exp(v) for v in col))
    return total / (2 * n)


def _pair(n=5, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    norm = torch.nn.functional.normalize
    return norm(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1), norm(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


def test_loss_equals_hand_computed():
    images, texts = _pair()
    out = contrastive_loss(images, texts, torch.tensor(0.1, dtype=torch.float64))
    assert out.loss.item() == pytest.approx(_by_hand(images, texts, 0.1), rel=1e-6)
    assert out.logits_per_image.shape == (5, 5)


def test_perfect_pairs_score_full_accuracy_and_low_loss():
    images, _ = _pair()
    out = contrastive_loss(images, images.clone(), torch.tensor(0.01, dtype=torch.float64))
    assert out.accuracy.item() == 1.0 and out.loss.item() < 1e-3


def test_temperature_is_a_clamped_parameter_with_gradient():
    objective = ContrastiveObjective(ContrastiveConfig(temperature=0.07, min_temperature=0.01, max_temperature=0.5))
    assert [n for n, _ in objective.named_parameters()] == ["log_temperature"]
    images, texts = _pair()
    contrastive_loss(images.float(), texts.float(), objective.temperature()).loss.backward()
    assert objective.log_temperature.grad is not None and objective.log_temperature.grad.abs() > 0
    with torch.no_grad():
        objective.log_temperature.fill_(math.log(5.0))
    assert objective.temperature().item() == pytest.approx(0.5)
    fixed = ContrastiveObjective(ContrastiveConfig(learn_temperature=False))
    assert list(fixed.parameters()) == [] and "log_temperature" in fixed.state_dict()


def test_bad_shapes_and_temperatures_are_value_errors():
    images, texts = _pair()
    with pytest.raises(ValueError, match="image_embeddings/text_embeddings"):
        contrastive_loss(images, texts[:3], torch.tensor(0.1))
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveConfig(temperature=0.9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_the_single_process_loss_and_gradients(tmp_path: Path):
    out = tmp_path / "itc.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(Path(__file__).with_name("itc_worker.py")), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["world"] == 2

    torch.manual_seed(0)
    images, texts = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    proj = torch.nn.Linear(6, 4, bias=False).double()
    objective = ContrastiveObjective().double()
    embed = lambda x: torch.nn.functional.normalize(proj(x), dim=-1)  # noqa: E731
    single = contrastive_loss(embed(images), embed(texts), objective.temperature())
    single.loss.backward()
    assert got["loss"] == pytest.approx(single.loss.item(), rel=1e-7)
    torch.testing.assert_close(torch.tensor(got["proj_grad"], dtype=torch.float64), proj.weight.grad, rtol=1e-7, atol=1e-10)
    assert got["temperature_grad"] == pytest.approx(objective.log_temperature.grad.item(), rel=1e-7)
