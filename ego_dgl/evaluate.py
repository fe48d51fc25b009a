"""Full-ranking evaluation: every user with held-out items is ranked against all items.

Users are scored in chunks whose size follows the memory available on the device, so a
Tiktok-sized user x item score matrix never exists at once. Known items (train for valid;
train + valid for test) are masked through the dataset's CSR rows, and the top items come
from `torch.topk`.

`protocol="legacy"` reproduces the authors' evaluator for comparison with published tables:
known items get a score of 1e-5 instead of -inf (so they can still be ranked above items
with a negative score) and the ideal DCG runs over min(hits, K) instead of
min(|held-out|, K). (Its third deviation, picking the epoch by test recall, lives in the
trainer.) Its figures are labelled with LEGACY_LABEL wherever they are printed or saved.

`protocol="mmrec"` is MMRec's protocol (enoche/MMRec's overall.yaml): the same full
ranking as "full", cut-offs 5/10/20/50, the epoch picked by validation recall@20 (the
trainer's `select_metric`); its training defaults live in train/defaults.py.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from ego_dgl.data.dataset import CSR, Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.untrusted import MAX_COUNT

PROTOCOLS = ("full", "legacy", "mmrec")
DEFAULT_KS = (5, 10, 20)
MMREC_KS = (5, 10, 20, 50)  # MMRec's topk
SELECTION = {"full": "recall@10", "legacy": "recall@10", "mmrec": "recall@20"}  # the metric that picks the epoch
METRICS = ("precision", "recall", "ndcg", "hit")
LEGACY_MASK_SCORE = 1e-5
LEGACY_LABEL = "LEGACY protocol (authors' evaluator: known items scored 1e-5, ideal DCG over min(hits, K), epoch picked by test recall)"
# bytes per (user, item) cell of one chunk: float32 scores plus topk/masking workspace
_BYTES_PER_CELL = 12
_MAX_CHUNK_BYTES = 1 << 30


def protocol_label(protocol: str) -> str:
    """How figures of this protocol are titled in tables and files."""
    if protocol == "mmrec":
        return "MMRec protocol: full ranking (known items masked to -inf), epoch picked by validation recall@20"
    return LEGACY_LABEL if protocol == "legacy" else "full ranking (known items masked to -inf)"


def select_metric(protocol: str) -> str:
    """The validation metric that picks the epoch (and a tuned value) under `protocol`."""
    return SELECTION.get(protocol, SELECTION["full"])


def protocol_ks(protocol: str) -> tuple[int, ...]:
    """The cut-offs every table of `protocol` shows."""
    return MMREC_KS if protocol == "mmrec" else DEFAULT_KS


def check_eval_options(ks: tuple[int, ...] | list[int], protocol: str) -> tuple[int, ...]:
    """Validate the cut-offs and protocol; returns the sorted distinct cut-offs."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r} is not one of: {', '.join(PROTOCOLS)}")
    ks = tuple(sorted({int(k) for k in ks}))
    bad = [k for k in ks if not 1 <= k <= MAX_COUNT]
    if not ks or bad:
        got = f", got {bad[0]}" if bad else ""
        raise ConfigError(f"--k must be a positive integer up to 2**63-1 (e.g. --k 10){got}")
    return ks


def available_memory(device: torch.device) -> int:
    """Bytes the device can still give: free CUDA memory, or MemAvailable on the host."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def auto_chunk_size(num_items: int, device: torch.device) -> int:
    """Users per chunk: a quarter of the available memory (at most 1 GiB) over the bytes
    one user's row of scores needs."""
    budget = min(available_memory(device) // 4, _MAX_CHUNK_BYTES)
    return max(1, budget // (max(num_items, 1) * _BYTES_PER_CELL))


def pairs_to_csr(num_users: int, pairs: np.ndarray) -> CSR:
    """Per-user sorted item lists of a split, duplicates removed."""
    pairs = np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
    return CSR.from_pairs(num_users, pairs[:, 0], pairs[:, 1])


def gather_rows(csr: CSR, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of the row in `rows`, column) for every entry of the given CSR rows,
    without a Python loop over rows."""
    starts = csr.indptr[rows]
    counts = csr.indptr[rows + 1] - starts
    local = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return local, csr.indices[np.repeat(starts, counts) + offsets]


def mask_known(scores: torch.Tensor, known: CSR, users: np.ndarray, protocol: str) -> None:
    """Overwrite in place the scores of each user's known items: -inf, or 1e-5 (legacy)."""
    local, cols = gather_rows(known, users)
    value = LEGACY_MASK_SCORE if protocol == "legacy" else -math.inf
    scores[torch.from_numpy(local).to(scores.device), torch.from_numpy(cols).to(scores.device)] = value


def top_items(
    user_table: torch.Tensor, item_table: torch.Tensor, users: np.ndarray, known: CSR, k: int, protocol: str = "full",
    excluded: torch.Tensor | None = None,
) -> torch.Tensor:
    """[len(users), k] item ids ranked by inner product, known items masked (and the items
    `excluded` marks, a bool [Q], scored -inf for every user)."""
    scores = user_table[torch.from_numpy(users).to(user_table.device)] @ item_table.T
    mask_known(scores, known, users, protocol)
    if excluded is not None:
        scores[:, excluded] = -math.inf
    return torch.topk(scores, min(k, scores.shape[1]), dim=1).indices


def hit_matrix(ranked: torch.Tensor, heldout: CSR, users: np.ndarray, num_items: int) -> torch.Tensor:
    """Bool [B, k]: whether the item at each rank is one of the user's held-out items."""
    local, cols = gather_rows(heldout, users)
    keys = torch.from_numpy(local * num_items + cols).to(ranked.device)
    rows = torch.arange(ranked.shape[0], device=ranked.device).unsqueeze(1)
    return torch.isin(rows * num_items + ranked, keys)


def metric_values(
    hits: torch.Tensor, num_heldout: torch.Tensor, ks: tuple[int, ...], protocol: str, ideal_hits: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Each user's metrics [B] (float64) from the hit matrix [B, k].

    NDCG's ideal DCG runs over min(|held-out|, K) positions, or min(hits, K) under the
    legacy protocol (where a user without hits scores 0); `ideal_hits` (the full hit
    matrix) fixes the legacy hit count when `hits` is a part of it (degree buckets).
    """
    hits = hits.double()
    ideal_hits = hits if ideal_hits is None else ideal_hits.double()
    width = hits.shape[1]
    # ranks beyond the ranked width (at most the catalogue) hold no hit: no discount for them
    discount = 1.0 / torch.log2(torch.arange(2, min(max(ks), width) + 2, device=hits.device, dtype=torch.float64))
    ideal_prefix = torch.cat([torch.zeros(1, device=hits.device, dtype=torch.float64), torch.cumsum(discount, 0)])
    n = num_heldout.double()
    values: dict[str, torch.Tensor] = {}
    for k in ks:
        h = hits[:, : min(k, width)]
        count = h.sum(1)
        dcg = (h * discount[: h.shape[1]]).sum(1)
        legacy_count = ideal_hits[:, : min(k, width)].sum(1)
        ideal_len = torch.minimum(legacy_count if protocol == "legacy" else n, torch.tensor(float(k), dtype=torch.float64))
        idcg = ideal_prefix[ideal_len.long()]
        values[f"precision@{k}"] = count / k
        values[f"recall@{k}"] = count / n
        values[f"ndcg@{k}"] = torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), torch.zeros_like(dcg))
        values[f"hit@{k}"] = (count > 0).double()
    return values


def metric_sums(hits: torch.Tensor, num_heldout: torch.Tensor, ks: tuple[int, ...], protocol: str) -> dict[str, float]:
    """Per-metric sums over the chunk's users (divided by the user count at the end)."""
    return {key: float(v.sum()) for key, v in metric_values(hits, num_heldout, ks, protocol).items()}


def metric_names(ks: tuple[int, ...]) -> list[str]:
    """Metric keys in a stable display order: metric by metric, cut-off by cut-off."""
    return [f"{m}@{k}" for m in METRICS for k in ks]


@torch.no_grad()
def evaluate(
    user_table: torch.Tensor,
    item_table: torch.Tensor,
    ds: Dataset,
    split: str,
    ks: tuple[int, ...] = DEFAULT_KS,
    protocol: str = "full",
    chunk_size: int | None = None,
    candidates: np.ndarray | None = None,
    counted: np.ndarray | None = None,
) -> dict[str, float]:
    """Precision, recall, NDCG and hit rate at every K, averaged over the users with at
    least one `split` item, ranking all items with the known ones masked; plus "users".
    `candidates` (bool [Q]) limits the ranking to those items; `counted` (bool [Q]) limits
    the held-out items (hits and |held-out|) to those, and the users to those holding one."""
    ks = check_eval_options(ks, protocol)
    known = ds.known_csr(split)
    pairs = ds.split(split)
    heldout = pairs_to_csr(ds.num_users, pairs if counted is None else pairs[counted[pairs[:, 1]]])
    excluded = None if candidates is None else torch.from_numpy(~candidates).to(item_table.device)
    num_heldout = np.diff(heldout.indptr)
    users = np.flatnonzero(num_heldout > 0)
    totals = dict.fromkeys(metric_names(ks), 0.0)
    chunk = chunk_size or auto_chunk_size(ds.num_items, item_table.device)
    for start in range(0, len(users), chunk):
        batch = users[start : start + chunk]
        ranked = top_items(user_table, item_table, batch, known, max(ks), protocol, excluded)
        hits = hit_matrix(ranked, heldout, batch, ds.num_items)
        n = torch.from_numpy(num_heldout[batch]).to(ranked.device)
        for key, value in metric_sums(hits, n, ks, protocol).items():
            totals[key] += value
    count = max(len(users), 1)
    result = {key: value / count for key, value in totals.items()}
    result["users"] = float(len(users))
    return result


# --- cold items (data/variants.py) --------------------------------------------------------
# On a dataset with cold items, three more groups of metrics, named "<group>/<metric>@K":
#   warm:     each user's held-out warm items, ranking the warm items only;
#   cold:     each user's held-out cold items, ranking the cold items only (can the model
#             order the new items for a user?);
#   cold-all: each user's held-out cold items, ranking every item as the overall metric
#             does (do the new items reach the top among all?).
# Users without a held-out item of the group are left out of its averages ("<group>/users"
# counts the rest). The overall metrics keep their meaning. A model that declares
# cold_start "none" gets no cold or cold-all figures (cold_refusal says why).
COLD_GROUPS = ("warm", "cold", "cold-all")


def cold_refusal(model_name: str, cold_start: str) -> str | None:
    """Why a model's cold metrics are not reported, or None when they are."""
    if cold_start != "none":
        return None
    return (f"{model_name} cannot score an item it never saw in training (cold_start 'none': no content "
            "reaches its item representations), so its cold and cold-all metrics are refused")


@torch.no_grad()
def evaluate_groups(
    user_table: torch.Tensor, item_table: torch.Tensor, ds: Dataset, split: str, ks: tuple[int, ...] = DEFAULT_KS,
    protocol: str = "full", chunk_size: int | None = None, cold_start: str = "none",
) -> dict[str, float]:
    """The warm, cold and cold-all metrics (COLD_GROUPS) of `split`, prefixed by group; empty
    for a dataset without cold items, and without cold groups when `cold_start` is "none"."""
    if not ds.has_cold_items:
        return {}
    warm = ds.warm_mask()
    groups = {"warm": (warm, warm)}
    if cold_start != "none":
        groups |= {"cold": (~warm, ~warm), "cold-all": (None, ~warm)}
    out: dict[str, float] = {}
    for group, (candidates, counted) in groups.items():
        values = evaluate(user_table, item_table, ds, split, ks, protocol, chunk_size, candidates, counted)
        out |= {f"{group}/{key}": value for key, value in values.items()}
    return out
