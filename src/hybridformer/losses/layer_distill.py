"""Distillation with layer transfer: the logit KD of :class:`DistillationObjective` plus, per mapped
pair of (student, teacher) blocks, a hidden-state cosine term and an attention-output term.

``loss = logit terms (as DistillationObjective) + hidden_weight * mean_pairs (1 - cos(h_s, h_t))
+ attention_weight * mean_pairs MSE(a_s, a_t)`` over the real (non-padding) tokens, where ``h`` is a
block's output and ``a`` its attention sublayer's output (after ``o_proj``, before the residual).
DistilBERT aligns hidden states with a cosine loss; the attention outputs stand in for TinyBERT's
attention maps, which hybrid attention never materialises. Features are read with forward hooks on
``model.encoder.blocks`` of both models, so neither model changes; student and teacher need the same
width for these terms (the logit term works at any width).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses.distill import DistillationObjective
from hybridformer.losses.output import LossOutput, model_inputs

__all__ = ["LayerDistillationObjective", "default_layer_map", "hidden_cosine_loss"]


def default_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """For each student block i, the teacher block whose output it should match: the last of its
    share, ``(i + 1) * teacher_layers // student_layers - 1`` (3 of 6: teacher blocks 1, 3, 5)."""
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"layer map: student layers must be in [1, {teacher_layers}], got {student_layers}")
    return [(i + 1) * teacher_layers // student_layers - 1 for i in range(student_layers)]


def hidden_cosine_loss(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Mean ``1 - cos`` between (B, N, d) student and teacher tokens over the real tokens of bool (B, N) ``mask``."""
    return (1.0 - F.cosine_similarity(student[mask].float(), teacher[mask].detach().float(), dim=-1)).mean()


@contextmanager
def _capture(blocks: Sequence[nn.Module], store: dict[str, list[Tensor]]) -> Iterator[None]:
    """Record each block's output and its attention's output (in block order) while inside."""
    handles = []
    for block in blocks:
        handles.append(block.register_forward_hook(lambda m, a, out: store["hidden"].append(out.hidden_states)))
        handles.append(
            block.attention.register_forward_hook(lambda m, a, out: store["attention"].append(out.hidden_states))
        )
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class LayerDistillationObjective(DistillationObjective):
    """Logit distillation with optional hidden-state (cosine) and attention-output (MSE) transfer.

    Args:
        teacher: the frozen teacher classifier (kept out of the module tree, as in the parent).
        temperature: softening T of the logit term.
        label_weight: share of the label cross-entropy in the logit terms, in [0, 1].
        hidden_weight: weight of the hidden-state cosine term (0: off).
        attention_weight: weight of the attention-output MSE term (0: off).
        layer_map: for each student block, the teacher block it matches; None: :func:`default_layer_map`.
    """

    def __init__(
        self,
        teacher: nn.Module,
        temperature: float = 1.0,
        label_weight: float = 0.0,
        *,
        hidden_weight: float = 0.0,
        attention_weight: float = 0.0,
        layer_map: Sequence[int] | None = None,
    ) -> None:
        super().__init__(teacher, temperature, label_weight)
        if hidden_weight < 0 or attention_weight < 0:
            raise ValueError(
                f"LayerDistillationObjective: hidden_weight and attention_weight must be >= 0, got "
                f"{hidden_weight} and {attention_weight}"
            )
        self.hidden_weight = hidden_weight
        self.attention_weight = attention_weight
        self.layer_map = None if layer_map is None else list(layer_map)

    def pairs(self, model: nn.Module) -> list[tuple[int, int]]:
        """(student block, teacher block) index pairs, checked against both models.

        Raises:
            ValueError: a map of the wrong length or out of range, or models of different widths.
        """
        n_student, n_teacher = len(model.encoder.blocks), len(self.teacher.encoder.blocks)
        mapping = self.layer_map if self.layer_map is not None else default_layer_map(n_student, n_teacher)
        if len(mapping) != n_student or any(not 0 <= t < n_teacher for t in mapping):
            raise ValueError(
                f"layer_map: needs one teacher block in [0, {n_teacher}) per student block ({n_student}), got {mapping}"
            )
        d_student, d_teacher = model.encoder.config.d_model, self.teacher.encoder.config.d_model
        if d_student != d_teacher:
            raise ValueError(
                f"hidden_weight/attention_weight: layer transfer needs the same width, student d_model={d_student}, "
                f"teacher {d_teacher}; use the logit term alone"
            )
        return list(enumerate(mapping))

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        if not (self.hidden_weight or self.attention_weight):
            return super().forward(model, batch)
        pairs = self.pairs(model)
        student: dict[str, list[Tensor]] = {"hidden": [], "attention": []}
        teacher: dict[str, list[Tensor]] = {"hidden": [], "attention": []}
        with _capture(model.encoder.blocks, student), _capture(self.teacher.encoder.blocks, teacher):
            result = super().forward(model, batch)
        inputs = model_inputs(batch)
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
        loss, metrics = result.loss, dict(result.metrics)
        if self.hidden_weight:
            hidden = torch.stack(
                [hidden_cosine_loss(student["hidden"][s], teacher["hidden"][t], mask) for s, t in pairs]
            ).mean()
            loss = loss + self.hidden_weight * hidden
            metrics["hidden_cosine"] = hidden.detach()
        if self.attention_weight:
            attention = torch.stack(
                [
                    F.mse_loss(student["attention"][s][mask].float(), teacher["attention"][t][mask].detach().float())
                    for s, t in pairs
                ]
            ).mean()
            loss = loss + self.attention_weight * attention
            metrics["attention_mse"] = attention.detach()
        return LossOutput(loss=loss, metrics=metrics)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, hidden_weight={self.hidden_weight}, attention_weight={self.attention_weight}, "
            f"layer_map={self.layer_map}"
        )
