"""Host memory: return the C heap's free pages to the kernel before a peak.

On CPU, Policy Split's loss micro-batches free their activations while the accumulated gradients stay; glibc keeps
the freed pages resident, and the next micro-batch's backward (the step's peak: TRL's LM-head tiles) comes on top of
them. Trimming the heap right before that backward cuts Policy Split's peak RSS from 1.23x to 1.10x GRPO's in the
overhead benchmark (docs/BENCHMARKS.md §1); losses and gradients are bitwise the same, and a call takes milliseconds.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _glibc_malloc_trim()


def release_free_heap() -> bool:
    """Give the heap's free pages back to the kernel (glibc only); whether it could."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
