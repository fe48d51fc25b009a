"""How much memory and how many cores the machine has: the system queries every layer may use
(the data layer checks a dataset against them, training a model and its processes), so it
sits below them all."""

from __future__ import annotations

import os

from ego_dgl.errors import ConfigError, EgoDGLError

GIB = 2**30
PROCESSES_PER_CORE = 16  # above this, more processes only share the cores more thinly


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


def check_memory(subject: str, need: int, hint: str, error: type[EgoDGLError] = ConfigError) -> None:
    """Refuse, before allocating them, `need` bytes of CPU memory that this machine does not
    have free: one line saying what (`subject`) needs how much and what to change."""
    free = available_memory("cpu")
    if free is not None and need > free:
        raise error(f"{subject} needs {gib(need)}, but this machine has {gib(free)} free; {hint}")


def check_process_count(flag: str, count: int) -> None:
    """Refuse a process count no machine's cores could run (e.g. --procs 10**6, which would
    spawn a million processes): at most PROCESSES_PER_CORE per core, so a few more processes
    than cores (--procs 4 on 2 cores, to try data-parallel training) still run."""
    cores = os.cpu_count() or 1
    if count > PROCESSES_PER_CORE * cores:
        raise ConfigError(f"{flag} {count} would start that many processes on this machine's {cores} CPU cores; "
                          f"give at most {PROCESSES_PER_CORE * cores} ({PROCESSES_PER_CORE} per core)")
