"""Distillation into a gated classifier: from its own full-width network (in place) or a frozen teacher.

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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.blocks import BlockOutput, TransformerBlock
from hybridformer.config import check
from hybridformer.heads import TextClassifier
from hybridformer.losses import distillation_loss
from hybridformer.sparsity import full_width, gated_ffns

__all__ = ["GateDistillConfig", "GateDistillOutput", "GateDistillation"]


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


@dataclass
class GateDistillOutput:
    """One training step's losses (the Trainer optimises ``loss``)."""

    loss: Tensor
    """Scalar: ``full_loss + gated_loss + hidden_weight * hidden_loss + aux_loss``."""
    logits: Tensor
    """(B, C) the gated network's class scores."""
    full_logits: Tensor
    """(B, C) the full-width network's (or the teacher's) class scores."""
    full_loss: Tensor
    """Scalar cross-entropy of the full-width network on the labels (0 with a teacher)."""
    gated_loss: Tensor
    """Scalar ``(1 - label_weight) * distillation + label_weight * cross-entropy`` of the gated network."""
    hidden_loss: Tensor
    """Scalar mean over blocks of the gated-vs-full-width squared distance of the output tokens
    (computed only when ``hidden_weight > 0``, else 0)."""
    aux_loss: Tensor
    """Scalar target-rate loss of the gates (gated pass)."""


class GateDistillation(nn.Module):
    """Training wrapper: ``GateDistillation(classifier, config)(**batch).loss`` (see the module doc).

    Save, evaluate and prune ``classifier`` itself; this module only defines the training loss.

    Args:
        classifier: the gated classifier being trained.
        config: the distillation settings (``config.teacher`` is read by the caller, which passes
            the loaded model as ``teacher``).
        teacher: a trained classifier to distil from, frozen and kept in eval mode; it is not a
            submodule (its weights are neither trained nor saved with the wrapper). None: in-place.

    Raises:
        ValueError: the classifier has no gated FFN (nothing narrower to distil into), or the
            teacher's labels or (for ``hidden_weight``) blocks do not match the classifier's.
    """

    def __init__(
        self, classifier: TextClassifier, config: GateDistillConfig, teacher: TextClassifier | None = None
    ) -> None:
        super().__init__()
        if not gated_ffns(classifier):
            raise ValueError(
                "GateDistillation: the classifier has no gated FFN; switch the gates on "
                "(model.sparsity.enabled=true) or turn gate_distill off"
            )
        self.classifier = classifier
        self.config = config
        self._blocks = _blocks(classifier)
        self._teacher: tuple[TextClassifier, list[TransformerBlock]] | None = None
        if teacher is not None:
            if teacher.num_labels != classifier.num_labels:
                raise ValueError(
                    f"gate_distill.teacher: has {teacher.num_labels} labels, the model {classifier.num_labels}"
                )
            blocks = _blocks(teacher)
            widths = [b.config.d_model for b in blocks]
            if config.hidden_weight > 0 and widths != [b.config.d_model for b in self._blocks]:
                raise ValueError(
                    f"gate_distill.hidden_weight: the teacher's blocks (widths {widths}) do not match the "
                    f"model's ({[b.config.d_model for b in self._blocks]}); set hidden_weight=0"
                )
            teacher.eval().requires_grad_(False)
            self._teacher = (teacher, blocks)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> GateDistillOutput:
        """Both passes over one batch; ``labels`` (B,) are required."""
        if labels is None:
            raise ValueError("GateDistillation: labels are required (it defines a training loss)")
        if self._teacher is None:
            with full_width(self.classifier), self._block_outputs(self._blocks) as full_states:
                full = self.classifier(input_ids, attention_mask, token_type_ids)
            full_loss = F.cross_entropy(full.logits, labels)
        else:
            teacher, blocks = self._teacher
            if next(teacher.parameters()).device != input_ids.device:
                teacher.to(input_ids.device)  # not a submodule, so the Trainer did not move it
            with torch.no_grad(), self._block_outputs(blocks) as full_states:
                full = teacher.eval()(input_ids, attention_mask, token_type_ids)
            full_loss = full.logits.new_zeros(())
        with self._block_outputs(self._blocks) as gated_states:
            gated = self.classifier(input_ids, attention_mask, token_type_ids, labels=labels)
        w = self.config.label_weight
        distill = distillation_loss(gated.logits, full.logits, self.config.temperature)
        gated_loss = (1.0 - w) * distill + w * F.cross_entropy(gated.logits, labels)
        hidden_loss = full_loss.new_zeros(())
        if full_states:
            real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
            hidden_loss = torch.stack(
                [F.mse_loss(g[real], f.detach()[real]) for g, f in zip(gated_states, full_states)]
            ).mean()
        return GateDistillOutput(
            loss=full_loss + gated_loss + self.config.hidden_weight * hidden_loss + gated.aux_loss,
            logits=gated.logits,
            full_logits=full.logits,
            full_loss=full_loss,
            gated_loss=gated_loss,
            hidden_loss=hidden_loss,
            aux_loss=gated.aux_loss,
        )

    @contextmanager
    def _block_outputs(self, blocks: list[TransformerBlock]) -> Iterator[list[Tensor]]:
        """Collect every block's (B, N, d) output tokens inside the block (only with ``hidden_weight > 0``)."""
        states: list[Tensor] = []
        if self.config.hidden_weight == 0:
            yield states
            return

        def hook(module: nn.Module, args: Any, output: BlockOutput) -> None:
            states.append(output.hidden_states)

        handles = [block.register_forward_hook(hook) for block in blocks]
        try:
            yield states
        finally:
            for handle in handles:
                handle.remove()


def _blocks(model: nn.Module) -> list[TransformerBlock]:
    return [m for m in model.modules() if isinstance(m, TransformerBlock)]
