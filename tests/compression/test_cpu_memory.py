"""retain_freed_memory: activation-sized blocks come from the reusable heap, not fresh mmaps (glibc); bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hybridformer.compression.cpu_memory import MMAP_THRESHOLD, retain_freed_memory

# In a fresh interpreter (the setting is process-wide): allocate a 12.6 MB tensor (MiniLM's FFN
# activation at batch 32 x 64 tokens) and ask glibc (mallinfo2) how many bytes are mmapped blocks.
# An mmapped block goes back to the kernel when freed, so the next one page-faults afresh.
_PROBE = """
import ctypes, sys, torch
from hybridformer.compression.cpu_memory import retain_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "retain":
    assert retain_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.empty(2048, 1536)
print(libc.mallinfo2().hblkhd - before)
"""


def _mmapped_bytes(setting: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, setting], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
def test_activation_blocks_come_from_the_heap() -> None:
    assert _mmapped_bytes("default") >= 2048 * 1536 * 4  # glibc's starting threshold is 128 KiB
    assert _mmapped_bytes("retain") == 0


def test_bad_thresholds_fail_clearly() -> None:
    with pytest.raises(ValueError, match="> 0"):
        retain_freed_memory(0)
    with pytest.raises(ValueError, match="maximum"):
        retain_freed_memory(MMAP_THRESHOLD + 1)
