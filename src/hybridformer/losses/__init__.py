"""Training objectives, each a function plus an ``nn.Module`` returning a typed output, outside the model."""

from .distill import DistillationLoss, distillation_loss
from .mlm import IGNORE_INDEX, MaskedTokens, MLMLoss, MLMLossOutput, mask_tokens, mlm_loss

__all__ = [
    "IGNORE_INDEX",
    "DistillationLoss",
    "MLMLoss",
    "MLMLossOutput",
    "MaskedTokens",
    "distillation_loss",
    "mask_tokens",
    "mlm_loss",
]
