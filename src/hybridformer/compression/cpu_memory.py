"""Keep freed activation memory in the process for CPU inference (glibc's malloc settings).

A CPU forward allocates its activations fresh at every op (PyTorch has no caching allocator on the
CPU). glibc serves blocks above its mmap threshold (128 KiB at start, raised dynamically up to
32 MiB after such a block is freed) with ``mmap`` and trims the heap top back to the kernel above
its trim threshold, so the next forward's tensors land on new pages and every 4 KiB page faults on
first touch. At MiniLM's batch 32 x 64 tokens an FFN activation is 12.6 MB = 3,072 page faults;
measured on our 2-core VM: 30,000-75,000 minor faults per forward, about 7 ms per 12.6 MB tensor
(``gelu`` on it 10 ms instead of 3 ms), 100-250 ms of a 500-800 ms forward, the same absolute cost
for the float and the int8 model (docs/compression.md).

:func:`retain_freed_memory` fixes both thresholds (``mallopt``), so freed blocks stay in the heap and
are reused: no page faults after the first forward, at the price of keeping the peak activation
memory mapped. The same effect from the environment, before the process starts:
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "retain_freed_memory"]

MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap, not ``mmap`` (glibc's largest allowed value, 32 MiB)."""
TRIM_THRESHOLD = 1 << 30
"""Free memory at the heap top kept up to this before it is returned to the kernel (1 GiB)."""

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3


def retain_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Make glibc keep freed blocks for reuse (process-wide; call once before inference).

    Args:
        mmap_threshold: bytes; allocations below it come from the heap (at most 32 MiB in glibc).
        trim_threshold: bytes of free heap top kept before trimming.

    Returns:
        True if both settings were applied; False where the C library is not glibc (nothing changed).

    Raises:
        ValueError: a threshold that is not positive, or ``mmap_threshold`` above 32 MiB.
    """
    if mmap_threshold <= 0 or trim_threshold <= 0:
        raise ValueError(f"retain_freed_memory: thresholds must be > 0, got {mmap_threshold}, {trim_threshold}")
    if mmap_threshold > MMAP_THRESHOLD:
        raise ValueError(f"retain_freed_memory: mmap_threshold above glibc's maximum {MMAP_THRESHOLD}: {mmap_threshold}")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
