"""The target-rate loss: its value by hand, and that it drives the active fraction to the target."""

import pytest
import torch

from hybridformer.sparsity.gate_rate import expected_active_fraction, target_rate_loss
from hybridformer.sparsity import GateDecision, GatedFFN, SparsityConfig


def test_expected_active_fraction_by_hand_ignores_padding():
    probs = torch.tensor([[[0.2, 0.4], [1.0, 1.0], [0.6, 0.8]]])  # (1, 3, 2)
    run_probs = torch.tensor([[0.5, 1.0, 1.0]])
    valid = torch.tensor([[True, False, True]])
    decision = GateDecision(
        group_gates=torch.zeros_like(probs),
        group_probs=probs,
        run_gates=torch.zeros(1, 3),
        run_probs=run_probs,
        valid=valid,
    )
    # real tokens: 0.5 * mean(0.2, 0.4) = 0.15 and 1.0 * mean(0.6, 0.8) = 0.7
    assert expected_active_fraction(decision).item() == pytest.approx((0.15 + 0.7) / 2)
    assert target_rate_loss(torch.tensor(0.425), 0.3, weight=2.0).item() == pytest.approx(2.0 * 0.125**2)


@pytest.fixture
def one_thread():
    """The training loop is hundreds of tiny ops: a second thread only adds synchronisation cost."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_to_target(target, loss_weight, steps=300):
    """Distil a dense FFN into a gated copy whose gates start almost all open (task loss wants them open)."""
    torch.manual_seed(0)
    cfg = SparsityConfig(
        enabled=True, n_groups=8, target_active=target, loss_weight=loss_weight,
        tau_start=1.0, tau_end=0.3, anneal_steps=steps,
    )
    teacher = GatedFFN(32, 128, SparsityConfig())
    student = GatedFFN(32, 128, cfg)
    student.load_state_dict(teacher.state_dict(), strict=False)
    torch.nn.init.constant_(student.gate.groups.bias, 3.0)  # p(open) = 0.95 at the start
    opt = torch.optim.Adam(student.parameters(), lr=0.05)
    fractions = []
    for step in range(steps):
        student.set_step(step)
        x = torch.randn(16, 8, 32)
        with torch.no_grad():
            y = teacher(x).hidden_states
        out = student(x)
        loss = (out.hidden_states - y).pow(2).mean() + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        fractions.append(out.stats.active_fraction.item())
    student.eval()
    with torch.no_grad():
        eval_fraction = student(torch.randn(64, 8, 32)).stats.active_fraction.item()
    return sum(fractions[-50:]) / 50, eval_fraction


@pytest.mark.parametrize("target", [0.3, 0.7])
def test_rate_loss_drives_the_active_fraction_to_the_target(target, one_thread):
    train_fraction, eval_fraction = train_to_target(target, loss_weight=1.0)
    assert abs(train_fraction - target) <= 0.05
    assert abs(eval_fraction - target) <= 0.05


def test_without_the_rate_loss_the_gates_stay_open(one_thread):
    train_fraction, _ = train_to_target(0.3, loss_weight=0.0, steps=100)
    assert train_fraction > 0.85
