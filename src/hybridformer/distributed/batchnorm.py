"""BatchNorm over the whole data-parallel batch (SyncBatchNorm that also runs on CPU with gloo).

The CNN trunks of the image and video encoders normalise with batch statistics in training. Under
data parallelism each rank sees a slice of the batch, so per-rank statistics would make a dp=2 step
differ from the single-process step on the concatenated batch. torch's ``nn.SyncBatchNorm`` computes
the global statistics but refuses CPU tensors; :class:`GroupBatchNorm` does the same with two
differentiable all-reduces (``torch.distributed.nn.functional.all_reduce``): the sum and count give
the mean, then the sum of squared deviations gives the variance (two passes, as torch's own kernel,
rather than ``E[x^2] - E[x]^2``, which cancels). Its backward all-reduces the statistics' gradients,
so every rank's input gradient counts the other ranks' losses too. Tensor-parallel ranks hold the same
rows: the group is the data-parallel one.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce

__all__ = ["GroupBatchNorm", "sync_batch_norms"]


class GroupBatchNorm(nn.Module):
    """A BatchNorm (1d/2d/3d) whose training statistics span ``group``; the same parameters and
    buffers (names and values) as the BatchNorm it replaces, so checkpoints do not change.

    Args:
        norm: the BatchNorm to replace (affine, tracking running statistics).
        group: the data-parallel process group.
    """

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm, group: dist.ProcessGroup) -> None:
        super().__init__()
        if not (norm.affine and norm.track_running_stats):
            raise ValueError(f"{type(norm).__name__}: only affine BatchNorms that track running statistics are synced")
        self.eps, self.momentum, self.group = norm.eps, norm.momentum, group
        self.weight, self.bias = norm.weight, norm.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(norm, name))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]  # every axis but the channels
        shape = (1, channels, *[1] * (x.dim() - 2))  # (1, C, 1, ...)
        local = torch.cat([x.sum(dims), x.new_full((1,), x.numel() // channels)])  # (C + 1,)
        total = all_reduce(local, group=self.group)
        count = total[-1]
        mean = total[:channels] / count  # (C,)
        centred = x - mean.view(shape)
        var = all_reduce(centred.square().sum(dims), group=self.group) / count  # (C,) biased
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1), alpha=m)
            self.num_batches_tracked.add_(1)
        return centred * torch.rsqrt(var + self.eps).view(shape) * self.weight.view(shape) + self.bias.view(shape)


def sync_batch_norms(model: nn.Module, group: dist.ProcessGroup) -> int:
    """Replace every BatchNorm of ``model`` by a :class:`GroupBatchNorm` over ``group`` (in place);
    return how many were replaced."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for name, norm in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, GroupBatchNorm(norm, group))
    return len(found)
