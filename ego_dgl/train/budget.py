"""Whether a model fits in memory before training allocates it: a rough lower estimate of a
training step's bytes for any model's config, refused in one line when it cannot fit."""

from __future__ import annotations

from dataclasses import fields, replace
from itertools import pairwise
from typing import Any

from ego_dgl.data.dataset import Dataset, WordBag
from ego_dgl.errors import ConfigError, out_of_memory
from ego_dgl.model.base import Recommender
from ego_dgl.model.config import RecommenderConfig
from ego_dgl.model.registry import build_model, model_name
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
    return 4 * (4 * params + activations) + intent_bytes(ds, cfg, M)


def intent_bytes(ds: Dataset, cfg: Any, M: int) -> int:
    """For a model with intent levels C_0..C_n (HUIGN's `levels()`): the memberships
    S_0 [Q, M, C_0] and S_l [M, C_{l-1}, C_l], their gradients and softmax inputs (float32,
    three copies), and the users' preferences [P, M * sum C_l] four times like any table."""
    levels = cfg.levels() if callable(getattr(cfg, "levels", None)) else []
    if not levels:
        return 0
    memberships = ds.num_items * M * levels[0] + M * sum(a * b for a, b in pairwise(levels))
    return 4 * (3 * memberships + 4 * ds.num_users * M * sum(levels))


BLAMED = ("dim", "layers_mm", "layers_id", "layers", "intents")  # the options an estimate can grow with


def blamed_option(ds: Dataset, cfg: Any) -> tuple[str, Any]:
    """The option (flag, value) that drives the estimate: the one whose smallest value
    shrinks it most, so --layers-mm 1000000 is named rather than --dim."""
    present = [name for name in BLAMED if hasattr(cfg, name)]
    smallest = {name: ("1" if name == "intents" else 1) for name in present}
    name = min(present, key=lambda n: training_bytes(ds, replace(cfg, **{n: smallest[n]})))
    flag = "--param intents=" if name == "intents" else f"--{name.replace('_', '-')} "
    return flag, getattr(cfg, name)


def check_fits(ds: Dataset, cfg: RecommenderConfig, device: str) -> None:
    """Refuse, before allocating anything, a model whose estimated training memory
    (`training_bytes`) exceeds what is free on `device`."""
    need, free = training_bytes(ds, cfg), available_memory(device)
    if free is not None and need > free:
        flag, value = blamed_option(ds, cfg)
        paper = " (the paper's --dim is 64)" if flag == "--dim " else ""
        raise ConfigError(
            f"{flag}{value} on {ds.name} needs at least {gib(need)} to train, but {device} has {gib(free)} free; "
            f"use a smaller {flag.strip(' =')}{paper}"
        )


FLAGGED = ("dim", "layers_mm", "layers_id", "layers")  # the model options with a flag of their own; the others are --param KEY=VALUE


def grown_option(cfg: RecommenderConfig) -> str:
    """The integer option furthest above its default, as the command line writes it (e.g.
    '--param heads=1000000000000'): what most likely asked for tables that cannot fit."""
    default = type(cfg)()
    ints = [f.name for f in fields(cfg) if type(getattr(cfg, f.name)) is int and type(getattr(default, f.name)) is int
            and getattr(default, f.name) > 0]
    if not ints:
        return "its options"
    name = max(ints, key=lambda n: getattr(cfg, n) // getattr(default, n))
    value = getattr(cfg, name)
    return f"--{name.replace('_', '-')} {value}" if name in FLAGGED else f"--param {name}={value}"


def build_in_memory(ds: Dataset, cfg: RecommenderConfig, device: Any, hint: str = "use a smaller value") -> Recommender:
    """`build_model`, with tables torch cannot allocate (an option the estimate does not
    count, e.g. GAT's heads or MMGCN's latent_dim, set to 10**12) refused in one line
    naming the option and ending with `hint`, not torch's traceback."""
    try:
        return build_model(ds, cfg, device)
    except (MemoryError, RuntimeError) as err:  # torch's allocators raise RuntimeError (OutOfMemoryError on CUDA)
        if not out_of_memory(err):
            raise
        raise ConfigError(f"--model {model_name(cfg)} on {ds.name}: its tables do not fit in the memory of {device} "
                          f"(the likely cause: {grown_option(cfg)}); {hint}") from None
