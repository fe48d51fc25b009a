"""Keep freed large CPU blocks inside the process between training steps.

Every step allocates and frees the same large tensors (node features [N, M, D], their
gradients, per-edge values). glibc serves blocks above its mmap threshold (at most 32 MB
by default) with fresh mmap()s and unmaps them on free, so each step touches new pages
and the kernel zero-fills them on first use: on Tiktok size that page faulting took 20%
of a CPU step. Raising the mmap and trim thresholds makes such blocks come from, and go
back to, the process's heap, which the next step reuses; the peak memory is unchanged,
it is only not handed back to the system between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap; 1 GiB of free heap top is kept


@cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False where the C library
    is not glibc (nothing is changed there)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
