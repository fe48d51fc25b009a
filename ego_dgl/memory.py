"""How much memory is free, so that what cannot fit is refused with one line before it
is allocated."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ego_dgl.errors import ConfigError

if TYPE_CHECKING:  # the data layer imports this module, so only type hints come back
    from ego_dgl.data.dataset import Dataset

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


def training_bytes(ds: Dataset, cfg: Any) -> int:
    """A rough lower estimate of the memory one training step needs, in bytes (float32),
    for any model's config:

        params = (P + Q)·D + P·M·D + Σ_dense F_m·D + Σ_words (V_m·W + W·D)
        bytes  = 4 · (4·params + 2·(P + Q)·D·(M·(K + 1) + L + 1) + 2·E·D·M)

    with P users, Q items, E training edges, M modalities (F_m features or V_m words of
    width W = cfg.word_dim; none when the model uses no content), K multimodal layers
    and L ID layers (EgoGCN's layers_mm and layers_id; a baseline's `layers` for both):
    the parameter tables four times (weights, gradients, Adam's two moments), each
    layer's node representations and their gradients, and the per-edge messages. Real
    use is higher; the estimate only has to catch what cannot fit at all (say --dim
    10**8). A model without a `dim` (popularity) needs nothing worth counting."""
    from ego_dgl.data.dataset import WordBag

    D = getattr(cfg, "dim", 0)
    if not D:
        return 0
    P, Q, E, W = ds.num_users, ds.num_items, len(ds.train), getattr(cfg, "word_dim", 0)
    uses_content = getattr(cfg, "branches", "") != "id" and getattr(cfg, "content", True)
    M = len(ds.features) if uses_content else 0
    K = getattr(cfg, "layers_mm", getattr(cfg, "layers", 1))
    L = getattr(cfg, "layers_id", getattr(cfg, "layers", 1))
    params = (P + Q) * D + P * M * D
    for f in ds.features.values() if M else ():
        params += f.num_words * W + W * D if isinstance(f, WordBag) else int(f.shape[1]) * D
    activations = 2 * (P + Q) * D * (M * (K + 1) + L + 1) + 2 * E * D * M
    return 4 * (4 * params + activations)


def check_fits(ds: Dataset, cfg: Any, device: str) -> None:
    """Refuse, before allocating anything, a model whose estimated training memory
    (`training_bytes`) exceeds what is free on `device`."""
    need, free = training_bytes(ds, cfg), available_memory(device)
    if free is not None and need > free:
        raise ConfigError(
            f"--dim {cfg.dim} on {ds.name} needs at least {gib(need)} to train, but {device} has {gib(free)} free; "
            "use a smaller --dim (the paper's is 64)"
        )
