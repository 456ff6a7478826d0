"""The target-rate loss: its value by hand, and that it drives the active fraction to the target."""

import pytest
import torch

from hybridformer.sparsity import (
    GateDecision,
    GatedFFN,
    SparsityConfig,
    expected_active_fraction,
    expected_group_usage,
    polarization_loss,
    target_rate_loss,
)


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
    # per group over the real tokens: (0.5 * 0.2 + 0.6) / 2 and (0.5 * 0.4 + 0.8) / 2
    usage = expected_group_usage(decision)
    torch.testing.assert_close(usage, torch.tensor([0.35, 0.5]))
    # target 0.5 of 2 groups: the pattern opens the more used group 1; mean(|0.35 - 0|, |0.5 - 1|)
    assert polarization_loss(usage, 0.5, 3.0).item() == pytest.approx(3.0 * (0.35 + 0.5) / 2)
    assert polarization_loss(torch.tensor([1.0, 0.0, 0.0, 1.0]), 0.5, 3.0).item() == pytest.approx(0.0)
    rates = torch.tensor([0.9, 0.2, 0.6, 0.7], requires_grad=True)
    polarization_loss(rates, 0.75, 1.0).backward()  # 3 of 4 kept: 0.9, 0.7, 0.6 up, 0.2 down
    torch.testing.assert_close(rates.grad, torch.tensor([-0.25, 0.25, -0.25, -0.25]))


@pytest.fixture
def one_thread():
    """The training loop is hundreds of tiny ops: a second thread only adds synchronisation cost."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_to_target(target, loss_weight, steps=300, polarization=0.0, usage=None):
    """Distil a dense FFN into a gated copy whose gates start almost all open (task loss wants them open)."""
    torch.manual_seed(0)
    cfg = SparsityConfig(
        enabled=True, n_groups=8, target_active=target, loss_weight=loss_weight,
        tau_start=1.0, tau_end=0.3, anneal_steps=steps, polarization=polarization,
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
        stats = student(torch.randn(64, 8, 32)).stats
    eval_fraction = stats.active_fraction.item()
    if usage is not None:
        usage.extend(stats.group_open_rate.tolist())
    return sum(fractions[-50:]) / 50, eval_fraction


@pytest.mark.parametrize("target", [0.3, 0.7])
def test_rate_loss_drives_the_active_fraction_to_the_target(target, one_thread):
    train_fraction, eval_fraction = train_to_target(target, loss_weight=1.0)
    assert abs(train_fraction - target) <= 0.05
    assert abs(eval_fraction - target) <= 0.05


def test_without_the_rate_loss_the_gates_stay_open(one_thread):
    train_fraction, _ = train_to_target(0.3, loss_weight=0.0, steps=100)
    assert train_fraction > 0.85


def test_polarization_makes_groups_always_or_never_open_at_the_same_rate(one_thread):
    """Same target: without polarization every group opens for part of the tokens; with it, the
    rate is met by groups that are (almost) never open, the ones pruning can remove."""
    plain, polar = [], []
    train_to_target(0.625, loss_weight=1.0, usage=plain)
    fraction, _ = train_to_target(0.625, loss_weight=1.0, polarization=2.0, usage=polar)
    assert abs(fraction - 0.625) <= 0.05
    undecided = lambda rates: sum(0.1 < r < 0.9 for r in rates)  # noqa: E731
    assert undecided(polar) <= 1 < undecided(plain)
    assert sum(r <= 0.1 for r in polar) >= 2
