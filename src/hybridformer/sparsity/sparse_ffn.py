"""GatedFFN: the transformer feed-forward sublayer with dynamically gated neuron groups (SPEC §3).

``fc_in`` (d_model -> d_ff) and ``fc_out`` (d_ff -> d_model) are plain ``nn.Linear`` layers, so a BERT
checkpoint's ``intermediate.dense`` / ``output.dense`` load into them unchanged. With gates off the
module is exactly ``fc_out(gelu(fc_in(x)))``. With gates on, a :class:`SparseGate` opens or closes
each of the G contiguous blocks of ``d_ff / G`` neurons per token:

- training: straight-through Gumbel-Softmax gates on the dense computation, plus the target-rate
  loss (``aux_loss``) that holds the expected open fraction at ``target_active``;
- inference (eval mode, autograd off): deterministic gates and the sparse kernel that computes only
  the open groups (:func:`~hybridformer.sparsity.dispatch.grouped_ffn`). In eval mode with autograd
  on, or when ``fc_in``/``fc_out`` are no longer plain float ``nn.Linear`` layers of the input's
  dtype (e.g. swapped for quantized ones), the dense masked form computes the same values.

Pruning (:func:`~hybridformer.sparsity.prune`) shrinks the weights to the groups worth keeping. The
persistent buffer ``kept_groups`` holds the original indices of the groups left, so a pruned
checkpoint loads into a freshly built (unpruned) model with plain ``load_state_dict``: the module
resizes itself to the checkpoint's group count first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.config import check
from hybridformer.initialization import init_children
from hybridformer.sparsity.config import SparsityConfig
from hybridformer.sparsity.dispatch import grouped_ffn, masked_ffn
from hybridformer.sparsity.gating import SparseGate
from hybridformer.sparsity.gate_rate import expected_active_fraction, target_rate_loss
from hybridformer.sparsity.schedule import target_at, temperature_at
from hybridformer.sparsity.stats import GateStats, gate_stats

__all__ = ["ACTIVATIONS", "FFNOutput", "GatedFFN"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # the exact erf form, as in BERT
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}
"""Activations by name; ``gelu`` is the exact erf GELU of BERT/RoBERTa."""


@dataclass
class FFNOutput:
    """What one FFN call returns."""

    hidden_states: Tensor
    """(B, N, d_model) the FFN branch's output (before the block's residual add). Zero for tokens the
    layer-skip gate skips and for padding when gates are on."""
    aux_loss: Tensor
    """Scalar target-rate loss of the gates (already weighted); 0 when gates are off."""
    stats: GateStats | None
    """Gate statistics of this call; None when gates are off."""


class GatedFFN(nn.Module):
    """Feed-forward sublayer ``fc_out(act(fc_in(x)))`` with optional per-token gates on neuron groups.

    Args:
        d_model: width of the tokens.
        d_ff: hidden width; ``config.n_groups`` must divide it when gates are enabled.
        config: the gate settings; ``enabled=False`` gives the plain dense FFN without gate weights.
        activation: a key of :data:`ACTIVATIONS` (``gelu`` = exact erf GELU).

    Raises:
        ConfigError: ``n_groups`` does not divide ``d_ff`` (gates enabled).
        ValueError: non-positive widths or an unknown activation.
    """

    def __init__(self, d_model: int, d_ff: int, config: SparsityConfig, activation: str = "gelu") -> None:
        super().__init__()
        if d_model < 1 or d_ff < 1:
            raise ValueError(f"GatedFFN: d_model and d_ff must be >= 1, got d_model={d_model}, d_ff={d_ff}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"GatedFFN: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.config = config
        self.d_model = d_model
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        self.fc_in = nn.Linear(d_model, d_ff)
        self.fc_out = nn.Linear(d_ff, d_model)
        self.gate: SparseGate | None = None
        if config.enabled:
            check(
                d_ff % config.n_groups == 0,
                "n_groups",
                f"must divide d_ff={d_ff}, got n_groups={config.n_groups}",
            )
            self.group_size = d_ff // config.n_groups
            self.gate = SparseGate(d_model, config.n_groups, config)
            # Original indices of the groups still present; shrinks when pruned, saved with the weights.
            self.register_buffer("kept_groups", torch.arange(config.n_groups))
        self.sparse_kernel: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None
        """Inference kernel used instead of ``grouped_ffn`` once a transform has swapped ``fc_in``/
        ``fc_out`` for other modules (e.g. int8 ones: ``hybridformer.compression.quantize`` sets one):
        ``kernel(x (T, d), group_mask (T, G) bool, run (T,) bool) -> (T, d)``, computing only the open
        groups. None: the float kernel when the layers fit it, else the dense masked form."""

    def init_weights(self) -> None:
        """torch's defaults for ``fc_in``/``fc_out``, the gate's own initialisation, and every group
        kept (a fresh, unpruned layer; see :mod:`hybridformer.initialization`)."""
        init_children(self)
        if self.gate is not None:
            with torch.no_grad():
                self.kept_groups.copy_(torch.arange(self.kept_groups.numel()))

    @property
    def d_ff(self) -> int:
        """Current hidden width (smaller than built after pruning)."""
        return self.fc_in.out_features

    @property
    def n_groups(self) -> int:
        """Current number of neuron groups (0 when gates are off)."""
        return 0 if self.gate is None else self.kept_groups.numel()

    def set_step(self, step: int) -> None:
        """Set the Gumbel-Softmax temperature and the open target of training step ``step``
        (see ``temperature_at`` and ``target_at``).

        The Trainer calls this before every step on each module that has it.
        """
        if self.gate is not None:
            self.gate.temperature = temperature_at(self.config, step)
            self.gate.target = target_at(self.config, step)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> FFNOutput:
        """Run the FFN.

        Args:
            x: (B, N, d_model) tokens.
            key_padding_mask: bool (B, N), True = real token; None = no padding. With gates on,
                padding computes nothing (output zero) and is left out of the loss and statistics;
                with gates off every position goes through the dense FFN.

        Returns:
            FFNOutput with the (B, N, d_model) outputs, the aux loss and the gate statistics.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"GatedFFN: x must be (B, N, d_model={self.d_model}), got {tuple(x.shape)}")
        if key_padding_mask is not None and (
            key_padding_mask.shape != x.shape[:2] or key_padding_mask.dtype != torch.bool
        ):
            raise ValueError(
                f"GatedFFN: key_padding_mask must be bool (B, N)={tuple(x.shape[:2])}, got "
                f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
            )
        if self.gate is None:
            return FFNOutput(self.fc_out(self.act(self.fc_in(x))), x.new_zeros(()), None)
        valid = key_padding_mask if key_padding_mask is not None else x.new_ones(x.shape[:2], dtype=torch.bool)
        decision = self.gate(x, valid)
        expected = expected_active_fraction(decision)
        aux_loss = target_rate_loss(expected, self.gate.target, self.config.loss_weight)
        fits = self._kernel_fits(x) or self.sparse_kernel is not None
        # Under torch.compile the masked form keeps shapes static (the sparse kernel's per-group
        # token counts are data-dependent and would break the graph at every layer).
        if self.training or self._needs_grad(x) or not fits or torch.compiler.is_compiling():
            y = masked_ffn(x, decision.group_gates, decision.run_gates, self.fc_in, self.fc_out, self.act)
        else:
            y = self._sparse_forward(x, decision.group_gates, decision.run_gates)
        stats = gate_stats(decision, expected, self.gate.temperature, skipping=self.gate.skip is not None)
        return FFNOutput(hidden_states=y, aux_loss=aux_loss, stats=stats)

    def _needs_grad(self, x: Tensor) -> bool:
        """Whether autograd must see this call (the sparse kernel has no backward)."""
        return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))

    def _kernel_fits(self, x: Tensor) -> bool:
        """Whether the sparse kernel can slice the weights: plain float Linear layers of x's dtype.

        After a transform swaps ``fc_in``/``fc_out`` for other modules (e.g. int8 quantized
        linears), the dense masked form, which only calls the modules, computes the same values.
        """
        return all(
            type(layer) is nn.Linear and type(layer.weight) is nn.Parameter and layer.weight.dtype == x.dtype
            for layer in (self.fc_in, self.fc_out)
        )

    def _sparse_forward(self, x: Tensor, group_gates: Tensor, run_gates: Tensor) -> Tensor:
        """Compute only the open groups of the running tokens."""
        batch, seq, d_model = x.shape
        run = run_gates.bool()  # (B, N)
        mask = group_gates.bool() & run.unsqueeze(-1)  # (B, N, G)
        if self.sparse_kernel is not None:
            y = self.sparse_kernel(x.reshape(batch * seq, d_model), mask.reshape(batch * seq, -1), run.reshape(-1))
            return y.view(batch, seq, -1)  # (B, N, d_model)
        y = grouped_ffn(
            x.reshape(batch * seq, d_model),
            mask.reshape(batch * seq, -1),
            self.fc_in,
            self.fc_out,
            self.act,
            run=run.reshape(-1),
        )
        return y.view(batch, seq, -1)  # (B, N, d_model)

    @torch.no_grad()
    def keep_groups(self, keep: Tensor) -> None:
        """Shrink the weights to the groups ``keep`` (indices among the current groups, ascending).

        ``fc_in`` rows, ``fc_out`` columns and the gate's group logits of the other groups are
        removed (new, smaller tensors, so a saved state dict really holds fewer parameters).
        Optimizers built on the old parameters must be rebuilt.
        """
        if self.gate is None:
            raise ValueError("GatedFFN.keep_groups: gates are off (config.enabled=False); nothing to prune")
        keep = torch.as_tensor(keep, dtype=torch.long, device=self.kept_groups.device)
        if keep.dim() != 1 or (keep.numel() and (keep.min() < 0 or keep.max() >= self.n_groups)):
            raise ValueError(
                f"GatedFFN.keep_groups: keep must be 1-D indices in [0, {self.n_groups}), got {keep.tolist()}"
            )
        offsets = torch.arange(self.group_size, device=keep.device)
        neurons = (keep.unsqueeze(1) * self.group_size + offsets).flatten()  # (kept * d_ff/G,)
        _select(self.fc_in, "weight", 0, neurons)
        _select(self.fc_in, "bias", 0, neurons)
        _select(self.fc_out, "weight", 1, neurons)
        _select(self.gate.groups, "weight", 0, keep)
        _select(self.gate.groups, "bias", 0, keep)
        self.fc_in.out_features = self.fc_out.in_features = neurons.numel()
        self.gate.groups.out_features = keep.numel()
        self.kept_groups = self.kept_groups[keep]
        self.sparse_kernel = None  # built on the old weights

    @torch.no_grad()
    def _resize(self, n_groups: int) -> None:
        """Give the weights the shapes of ``n_groups`` groups (values are loaded over them next)."""
        d_ff = n_groups * self.group_size
        _reshape(self.fc_in, "weight", (d_ff, self.d_model))
        _reshape(self.fc_in, "bias", (d_ff,))
        _reshape(self.fc_out, "weight", (self.d_model, d_ff))
        _reshape(self.gate.groups, "weight", (n_groups, self.gate.groups.in_features))
        _reshape(self.gate.groups, "bias", (n_groups,))
        self.fc_in.out_features = self.fc_out.in_features = d_ff
        self.gate.groups.out_features = n_groups
        self.kept_groups = torch.arange(n_groups, device=self.kept_groups.device)
        self.sparse_kernel = None  # built on the old weights

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Runs before the children load: a pruned checkpoint first resizes this module to its shapes.
        if self.gate is not None:
            key = prefix + "kept_groups"
            weight = state_dict.get(prefix + "fc_in.weight")
            if key not in state_dict and weight is not None:
                # A dense checkpoint (e.g. converted BERT) has no buffer: its groups are all present.
                state_dict[key] = torch.arange(weight.shape[0] // self.group_size)
            if key in state_dict and state_dict[key].numel() != self.n_groups:
                self._resize(state_dict[key].numel())
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        gates = f"n_groups={self.n_groups}" if self.gate is not None else "gates=off"
        return f"d_model={self.d_model}, d_ff={self.d_ff}, {gates}, activation={self.activation}"


def _select(module: nn.Module, name: str, dim: int, index: Tensor) -> None:
    """Replace ``module.<name>`` by the parameter's slices ``index`` along ``dim`` (a new tensor)."""
    param = getattr(module, name)
    if param is not None:
        setattr(module, name, nn.Parameter(param.index_select(dim, index), requires_grad=param.requires_grad))


def _reshape(module: nn.Module, name: str, shape: tuple[int, ...]) -> None:
    """Replace ``module.<name>`` by an uninitialised parameter of ``shape`` (same dtype and device)."""
    param = getattr(module, name)
    if param is not None:
        setattr(module, name, nn.Parameter(param.new_empty(shape), requires_grad=param.requires_grad))
