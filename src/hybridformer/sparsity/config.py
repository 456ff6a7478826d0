"""Configuration of the dynamic sparse activation of one FFN (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hybridformer.config import check

__all__ = ["SparsityConfig"]


@dataclass
class SparsityConfig:
    """Gates over groups of FFN neurons, learned with Gumbel-Softmax, skipped at inference.

    The FFN's ``d_ff`` hidden neurons are split into ``n_groups`` contiguous blocks; a light gate MLP
    reads each token and opens or closes every block for that token. ``n_groups`` must divide ``d_ff``;
    that is checked when the :class:`~hybridformer.sparsity.GatedFFN` is built (the config does not
    know ``d_ff``), and only when ``enabled``.
    """

    enabled: bool = False
    """Gate the FFN. False: the layer is exactly the dense FFN, with no gate parameters."""
    n_groups: int = 8
    """Number of contiguous neuron groups the gate switches (G). Larger G prunes at a finer grain
    but pays more per-group dispatch overhead at inference (8 is the fastest measured on CPU for
    d_ff=2048, see benchmarks/README.md)."""
    target_active: float = 0.5
    """Fraction of (token, group) pairs that should be open, in (0, 1]; the target-rate loss holds
    the expected active fraction here. With ``layer_skip`` a skipped token counts as all closed."""
    target_start: float | None = None
    """Open fraction the target-rate loss asks for at step 0. It falls to ``target_active`` over
    ``anneal_steps`` on the cubic schedule of gradual pruning (Zhu & Gupta, 2017): the gates close
    progressively, fast at first and slowly at the end, while the model adapts. None: the target is
    ``target_active`` from the start."""
    tau_start: float = 1.0
    """Gumbel-Softmax temperature at training step 0."""
    tau_end: float = 0.2
    """Temperature reached after ``anneal_steps`` (then held); must be in (0, tau_start]."""
    anneal_steps: int = 10_000
    """Steps of the exponential decay from ``tau_start`` to ``tau_end`` (and of the fall from
    ``target_start`` to ``target_active``); 0 starts at ``tau_end`` (and ``target_active``)."""
    inference: Literal["threshold", "top_g"] = "threshold"
    """Deterministic gates at eval time: open groups whose probability exceeds ``threshold``, or
    the ``top_g`` most probable groups of each token."""
    threshold: float = 0.5
    """Open probability above which a group is on at inference (``inference="threshold"``)."""
    top_g: int = 4
    """Groups open per token at inference (``inference="top_g"``); at most ``n_groups``. After
    pruning a layer with fewer groups left opens all of them when it has at most ``top_g``."""
    layer_skip: bool = False
    """Add a Mixture-of-Depths style gate that lets a token skip the whole FFN: a skipped token's
    FFN output is exactly zero, so the block's residual passes it through unchanged."""
    loss_weight: float = 1.0
    """Weight of the target-rate loss ``(expected active fraction - target_active)**2``."""
    gate_hidden: int = 0
    """Hidden width of the gate MLP; 0 makes the gate a single linear layer."""

    def __post_init__(self) -> None:
        check(self.n_groups >= 1, "n_groups", f"must be >= 1, got {self.n_groups}")
        check(
            0.0 < self.target_active <= 1.0,
            "target_active",
            f"must be in (0, 1], got {self.target_active}",
        )
        check(
            self.target_start is None or self.target_active <= self.target_start <= 1.0,
            "target_start",
            f"must be in [target_active={self.target_active}, 1] or None, got {self.target_start}",
        )
        check(self.tau_start > 0, "tau_start", f"must be > 0, got {self.tau_start}")
        check(
            0.0 < self.tau_end <= self.tau_start,
            "tau_end",
            f"must be in (0, tau_start={self.tau_start}], got {self.tau_end}",
        )
        check(self.anneal_steps >= 0, "anneal_steps", f"must be >= 0, got {self.anneal_steps}")
        check(
            self.inference in ("threshold", "top_g"),
            "inference",
            f"must be 'threshold' or 'top_g', got {self.inference!r}",
        )
        check(0.0 < self.threshold < 1.0, "threshold", f"must be in (0, 1), got {self.threshold}")
        check(self.top_g >= 1, "top_g", f"must be >= 1, got {self.top_g}")
        check(
            self.inference != "top_g" or self.top_g <= self.n_groups,
            "top_g",
            f"must be <= n_groups={self.n_groups} with inference='top_g', got {self.top_g}",
        )
        check(self.loss_weight >= 0, "loss_weight", f"must be >= 0, got {self.loss_weight}")
        check(self.gate_hidden >= 0, "gate_hidden", f"must be >= 0, got {self.gate_hidden}")
