"""In-place distillation of a gated classifier from its own full-width network (slimmable networks).

Gated FFNs give each token a sub-network (the open groups). Trained on the labels alone, that
sub-network learns less per step than the dense model does, and loses accuracy. Universally
slimmable networks (Yu & Huang, 2019) and DynaBERT (Hou et al., 2020) train the widest network on
the labels and the narrower ones on the widest one's predictions, all on shared weights, in the same
step. Here each step runs the classifier twice on the batch:

- full width (every FFN dense, :func:`~hybridformer.sparsity.full_width`): cross-entropy on labels;
- gated (sampled gates): distillation from the full-width logits, mixed with the label
  cross-entropy by ``label_weight``, plus the gates' target-rate loss.

The training data, steps and batches are the same as without it; each step costs two forward and
backward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.config import check
from hybridformer.heads import TextClassifier
from hybridformer.losses import distillation_loss
from hybridformer.sparsity import full_width, gated_ffns

__all__ = ["SelfDistillConfig", "SelfDistillOutput", "SelfDistillation"]


@dataclass
class SelfDistillConfig:
    """In-place distillation of the gated network from the full-width one (needs gated FFNs)."""

    enabled: bool = False
    """Train the full-width network on the labels and the gated one on its predictions, each step."""
    temperature: float = 1.0
    """Softening of both distributions in the distillation term (Hinton's T)."""
    label_weight: float = 0.0
    """Share of the gated network's loss taken by the label cross-entropy; the distillation term gets
    ``1 - label_weight`` (0: pure in-place distillation, as in slimmable networks)."""

    def __post_init__(self) -> None:
        check(self.temperature > 0, "temperature", f"must be > 0, got {self.temperature}")
        check(0.0 <= self.label_weight <= 1.0, "label_weight", f"must be in [0, 1], got {self.label_weight}")


@dataclass
class SelfDistillOutput:
    """One training step's losses (the Trainer optimises ``loss``)."""

    loss: Tensor
    """Scalar: ``full_loss + gated_loss + aux_loss``."""
    logits: Tensor
    """(B, C) the gated network's class scores."""
    full_logits: Tensor
    """(B, C) the full-width network's class scores."""
    full_loss: Tensor
    """Scalar cross-entropy of the full-width network on the labels."""
    gated_loss: Tensor
    """Scalar ``(1 - label_weight) * distillation + label_weight * cross-entropy`` of the gated network."""
    aux_loss: Tensor
    """Scalar target-rate loss of the gates (gated pass)."""


class SelfDistillation(nn.Module):
    """Training wrapper: ``SelfDistillation(classifier, config)(**batch).loss`` (see the module doc).

    Save, evaluate and prune ``classifier`` itself; this module only defines the training loss.

    Raises:
        ValueError: the classifier has no gated FFN (nothing narrower to distil into).
    """

    def __init__(self, classifier: TextClassifier, config: SelfDistillConfig) -> None:
        super().__init__()
        if not gated_ffns(classifier):
            raise ValueError(
                "SelfDistillation: the classifier has no gated FFN; switch the gates on "
                "(model.sparsity.enabled=true) or turn self-distillation off"
            )
        self.classifier = classifier
        self.config = config

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> SelfDistillOutput:
        """Both passes over one batch; ``labels`` (B,) are required."""
        if labels is None:
            raise ValueError("SelfDistillation: labels are required (it defines a training loss)")
        with full_width(self.classifier):
            full = self.classifier(input_ids, attention_mask, token_type_ids)
        gated = self.classifier(input_ids, attention_mask, token_type_ids, labels=labels)
        full_loss = F.cross_entropy(full.logits, labels)
        w = self.config.label_weight
        distill = distillation_loss(gated.logits, full.logits, self.config.temperature)
        gated_loss = (1.0 - w) * distill + w * F.cross_entropy(gated.logits, labels)
        return SelfDistillOutput(
            loss=full_loss + gated_loss + gated.aux_loss,
            logits=gated.logits,
            full_logits=full.logits,
            full_loss=full_loss,
            gated_loss=gated_loss,
            aux_loss=gated.aux_loss,
        )
