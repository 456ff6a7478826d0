"""When a value check (``int(x.min())``, ``bool(mask.all())``) may run without costing a host sync.

Shapes and dtypes are metadata and always checked. Checks that read tensor *values* run only on CPU
tensors outside ``torch.compile``: there reading a value is free, while on an accelerator it would
stall the stream and under compile it would break the graph. Accelerator inputs come from our
collators, which build them from tokenizers and label lists already checked on the host.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["values_checkable", "check_range"]


def values_checkable(x: Tensor) -> bool:
    """True when reading ``x``'s values is free: a CPU tensor, not inside ``torch.compile``."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def check_range(x: Tensor, name: str, high: int, what: str) -> None:
    """Raise ``ValueError("<name>: must be in [0, <what>=<high>), got min .. max ..")`` when a
    value of the integer tensor ``x`` lies outside [0, high) (only where :func:`values_checkable`)."""
    if x.numel() == 0 or not values_checkable(x):
        return
    low, top = int(x.min()), int(x.max())
    if low < 0 or top >= high:
        raise ValueError(f"{name}: must be in [0, {what}={high}), got min {low} max {top}")
