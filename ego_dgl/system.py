"""How much memory the machine has free: the one system query every layer may use (the data
layer checks a dataset against it, training checks a model), so it sits below them all."""

from __future__ import annotations

import os

GIB = 2**30


def available_memory(device: str = "cpu") -> int | None:
    """Free bytes on `device`: the available physical memory for the CPU, the free
    memory torch reports for a CUDA device; None when the system cannot say."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(size: float) -> str:
    """Bytes as GiB for messages, e.g. '931.3 GiB'."""
    return f"{size / GIB:,.1f} GiB"
