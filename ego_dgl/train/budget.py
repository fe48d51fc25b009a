"""Whether a model fits in memory before training allocates it: a rough lower estimate of a
training step's bytes for any model's config, refused in one line when it cannot fit."""

from __future__ import annotations

from ego_dgl.data.dataset import Dataset, WordBag
from ego_dgl.errors import ConfigError
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.system import available_memory, gib


def training_bytes(ds: Dataset, cfg: RecommenderConfig) -> int:
    """A rough lower estimate of the memory one training step needs, in bytes (float32),
    for any model's config:

        params = (P + Q)·D + P·M·D + Σ_dense F_m·D + Σ_words (V_m·W + W·D)
        bytes  = 4 · (4·params + 2·(P + Q)·D·(M·(K + 1) + L + 1) + 2·E·D·M)

    with P users, Q items, E training edges, M modalities (F_m features or V_m words of
    width W = cfg.word_dim; none when the model uses no content), K multimodal layers
    and L ID layers, as the config's `footprint()` declares them:
    the parameter tables four times (weights, gradients, Adam's two moments), each
    layer's node representations and their gradients, and the per-edge messages. Real
    use is higher; the estimate only has to catch what cannot fit at all (say --dim
    10**8). A model without a `dim` (popularity) needs nothing worth counting."""
    size = cfg.footprint()
    if size is None:
        return 0
    P, Q, E, W, D = ds.num_users, ds.num_items, len(ds.train), size.word_dim, size.dim
    M = len(ds.features) if size.content else 0
    K, L = size.layers_mm, size.layers_id
    params = (P + Q) * D + P * M * D
    for f in ds.features.values() if M else ():
        params += f.num_words * W + W * D if isinstance(f, WordBag) else int(f.shape[1]) * D
    activations = 2 * (P + Q) * D * (M * (K + 1) + L + 1) + 2 * E * D * M
    return 4 * (4 * params + activations)


def check_fits(ds: Dataset, cfg: RecommenderConfig, device: str) -> None:
    """Refuse, before allocating anything, a model whose estimated training memory
    (`training_bytes`) exceeds what is free on `device`."""
    need, free = training_bytes(ds, cfg), available_memory(device)
    size = cfg.footprint()
    if size is not None and free is not None and need > free:
        raise ConfigError(
            f"--dim {size.dim} on {ds.name} needs at least {gib(need)} to train, but {device} has {gib(free)} free; "
            "use a smaller --dim (the paper's is 64)"
        )
