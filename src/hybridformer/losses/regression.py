"""Sequence regression (GLUE's STS-B): mean squared error of a 1-output head, plus the model's auxiliary terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses.output import LossOutput, model_inputs, require_labels

__all__ = ["RegressionObjective", "regression_loss"]


def regression_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error of (B, 1) ``logits`` against (B,) float ``targets`` (in float32 at least).

    Raises:
        ValueError: logits not (B, 1) or targets not a float (B,) tensor.
    """
    batch = logits.shape[0]
    if logits.dim() != 2 or logits.shape[1] != 1:
        raise ValueError(f"logits: regression needs a 1-output head, got shape {tuple(logits.shape)}")
    if targets.shape != (batch,) or not targets.dtype.is_floating_point:
        raise ValueError(f"labels: expected float targets of shape ({batch},), got {targets.dtype} {tuple(targets.shape)}")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return F.mse_loss(logits[:, 0].to(dtype), targets.to(dtype))


class RegressionObjective(nn.Module):
    """``loss = mse(model(**inputs).logits[:, 0], labels) + output.aux_loss``. Metrics: ``mse``, ``aux_loss``."""

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> LossOutput:
        targets = require_labels(batch, "RegressionObjective")
        out = model(**model_inputs(batch))
        mse = regression_loss(out.logits, targets)
        return LossOutput(loss=mse + out.aux_loss, metrics={"mse": mse.detach(), "aux_loss": out.aux_loss.detach()})
