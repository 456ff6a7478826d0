"""The initialisation contract: constructors allocate, ``init_weights()`` initialises.

Every hybridformer model defines ``init_weights()``, which (re)initialises all its parameters and
buffers from the global RNG in a fixed order. A model can then be built on the meta device
(no memory), parallelised, materialised with ``to_empty(device=...)`` and initialised; under the
same seed this gives exactly the tensors of an eager build. For that, an eager constructor must not
consume random numbers while allocating: it allocates inside :func:`allocating` (which restores
the RNG afterwards) and then initialises what it built.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["allocating", "init_children"]


@contextmanager
def allocating() -> Iterator[None]:
    """Build modules without advancing the CPU RNG (torch's layers draw their default init)."""
    with torch.random.fork_rng(devices=[]):
        yield


def init_children(module: nn.Module) -> None:
    """Initialise everything below ``module``, depth first in registration order.

    A child with its own ``init_weights()`` is initialised by it (and not descended into), a torch
    layer by its ``reset_parameters()``, any other container through its own children. A module's
    ``init_weights()`` calls this, then sets what it initialises differently.
    """
    for child in module.children():
        own = getattr(child, "init_weights", None) or getattr(child, "reset_parameters", None)
        if callable(own):
            own()
        else:
            init_children(child)
