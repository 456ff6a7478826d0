"""Gate distillation: a gated classifier learns from its own full-width network (in place) or a frozen teacher.

Gated FFNs give each token a sub-network (the open groups). Trained on the labels alone, that
sub-network learns less per step than the dense model does, and loses accuracy. Universally
slimmable networks (Yu & Huang, 2019) and DynaBERT (Hou et al., 2020) train the widest network on
the labels and the narrower ones on the widest one's predictions, all on shared weights, in the same
step. Here each step runs the classifier twice on the batch:

- full width (every FFN dense, :func:`~hybridformer.sparsity.full_width`): cross-entropy on labels;
- gated (sampled gates): distillation from the full-width logits, mixed with the label
  cross-entropy by ``label_weight``, plus the gates' target-rate loss, plus (``hidden_weight``)
  the mean squared distance of every block's output tokens to the full-width ones (DynaBERT's
  hidden-state distillation; real tokens only).

The training data, steps and batches are the same as without it; each step costs two forward and
backward passes.

With a ``teacher`` (a trained classifier, e.g. the same model fine-tuned without gates), the gated
network distils from the frozen teacher instead, and the full-width pass is skipped: one forward
pass of the teacher and one forward and backward of the student per step. Starting the gated
model from the teacher's own weights (``ModelConfig.init_from``) and distilling from it is the
recipe that kept pruned MiniLM within a point of its dense hybrid model (``results/text.md``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.blocks import TransformerBlock
from hybridformer.config import check
from hybridformer.losses.classification import classification_loss
from hybridformer.losses.distill import distillation_loss
from hybridformer.losses.output import LossOutput, model_inputs, require_labels
from hybridformer.sparsity.calibration import gated_ffns
from hybridformer.sparsity.full_width import full_width

__all__ = ["GateDistillConfig", "GateDistillObjective"]


@dataclass
class GateDistillConfig:
    """Distillation into the gated network, in place or from a teacher (needs gated FFNs)."""

    enabled: bool = False
    """Train the gated network on the full-width network's (or the teacher's) predictions, each step;
    in place, the full-width network trains on the labels in the same step."""
    temperature: float = 1.0
    """Softening of both distributions in the distillation term (Hinton's T)."""
    label_weight: float = 0.0
    """Share of the gated network's loss taken by the label cross-entropy; the distillation term gets
    ``1 - label_weight`` (0: pure in-place distillation, as in slimmable networks)."""
    hidden_weight: float = 0.0
    """Weight of the hidden-state term: mean over blocks of the squared distance between the gated
    and the full-width (or teacher's) block outputs, averaged over real tokens and features (0: off)."""
    teacher: str | None = None
    """Folder of a trained classifier (``TextClassifier.save_pretrained``) to distil from, frozen,
    with the same labels and, for ``hidden_weight``, the same number of blocks and width. None: the
    model's own full-width network, trained alongside (in-place distillation)."""

    def __post_init__(self) -> None:
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        check(0.0 <= self.label_weight <= 1.0, "label_weight", f"must be in [0, 1], got {self.label_weight}")
        check(self.hidden_weight >= 0, "hidden_weight", f"must be >= 0, got {self.hidden_weight}")


class GateDistillObjective(nn.Module):
    """``GateDistillObjective(config, teacher)(classifier, batch) -> LossOutput`` (see the module doc).

    The objective never wraps the classifier: the Trainer optimises, saves and resumes the classifier
    itself, whose module paths and state-dict keys are the same as with any other objective.

    Metrics: ``full_loss`` (full-width cross-entropy, 0 with a teacher), ``gated_loss``,
    ``hidden_loss``, ``aux_loss`` (gates' rate term).

    Args:
        config: the distillation settings (``config.teacher`` is read by the caller, which passes
            the loaded model as ``teacher``).
        teacher: a trained classifier to distil from, frozen and kept in eval mode; not a submodule
            (its weights are neither trained nor saved). None: in-place distillation.
    """

    def __init__(self, config: GateDistillConfig, teacher: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self._teacher = (teacher.eval().requires_grad_(False),) if teacher is not None else ()

    def check_model(self, model: nn.Module) -> None:
        """Raise ValueError when ``model`` cannot be trained this way (no gated FFN, a teacher whose
        labels or, for ``hidden_weight``, blocks differ)."""
        if not gated_ffns(model):
            raise ValueError(
                "gate_distill: the classifier has no gated FFN; switch the gates on "
                "(model.sparsity.enabled=true) or turn gate_distill off"
            )
        if not self._teacher:
            return
        teacher = self._teacher[0]
        if teacher.num_labels != model.num_labels:
            raise ValueError(f"gate_distill.teacher: has {teacher.num_labels} labels, the model {model.num_labels}")
        widths = [b.config.d_model for b in _blocks(teacher)]
        mine = [b.config.d_model for b in _blocks(model)]
        if self.config.hidden_weight > 0 and widths != mine:
            raise ValueError(
                f"gate_distill.hidden_weight: the teacher's blocks (widths {widths}) do not match the "
                f"model's ({mine}); set hidden_weight=0"
            )

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        labels = require_labels(batch, "GateDistillObjective")
        inputs = model_inputs(batch)
        if not self._teacher:
            with full_width(model), self._block_outputs(model) as full_states:
                full = model(**inputs)
            full_loss = classification_loss(full.logits, labels)
        else:
            teacher = self._teacher[0]
            if next(teacher.parameters()).device != labels.device:
                teacher.to(labels.device)
            with torch.no_grad(), self._block_outputs(teacher) as full_states:
                full = teacher.eval()(**inputs)
            full_loss = full.logits.new_zeros(())
        with self._block_outputs(model) as gated_states:
            gated = model(**inputs)
        w = self.config.label_weight
        distill = distillation_loss(gated.logits, full.logits, self.config.temperature)
        gated_loss = (1.0 - w) * distill + w * classification_loss(gated.logits, labels)
        hidden_loss = full_loss.new_zeros(())
        if full_states:
            mask = inputs.get("attention_mask")
            real = torch.ones_like(inputs["input_ids"], dtype=torch.bool) if mask is None else mask.bool()
            hidden_loss = torch.stack(
                [F.mse_loss(g[real], f.detach()[real]) for g, f in zip(gated_states, full_states)]
            ).mean()
        loss = full_loss + gated_loss + self.config.hidden_weight * hidden_loss + gated.aux_loss
        metrics = {"full_loss": full_loss, "gated_loss": gated_loss, "hidden_loss": hidden_loss, "aux_loss": gated.aux_loss}
        return LossOutput(loss=loss, metrics={k: v.detach() for k, v in metrics.items()})

    @contextmanager
    def _block_outputs(self, model: nn.Module) -> Iterator[list[Tensor]]:
        """Collect every block's (B, N, d) output tokens inside the block (only with ``hidden_weight > 0``)."""
        states: list[Tensor] = []
        if self.config.hidden_weight == 0:
            yield states
            return

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            states.append(output.hidden_states)

        handles = [block.register_forward_hook(hook) for block in _blocks(model)]
        try:
            yield states
        finally:
            for handle in handles:
                handle.remove()


def _blocks(model: nn.Module) -> list[TransformerBlock]:
    return [m for m in model.modules() if isinstance(m, TransformerBlock)]
