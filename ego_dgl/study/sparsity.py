"""The sparsity study's figure (issue 23): test accuracy against the share of training
interactions kept, one line per model, and EGO-hard's fused shares per level, from one
compare folder per level (`egodgl compare --dataset ml100k-train0.25 ...`; the level is
read from the dataset name, 1 for a dataset that is no train-fraction variant).

A fused share is the fraction of edges whose layer-0 message is the fused one
(EgoGCN's f"fused/<modality>/<direction>" statistics), averaged over modalities, at the
cell's best epoch (its history.csv row), then over the seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ego_dgl.data.variants import VARIANT
from ego_dgl.errors import ConfigError
from ego_dgl.runs import RECORD_HINT, pyplot, read_csv, read_json, save_png, write_csv
from ego_dgl.untrusted import Field, check_record

DIRECTIONS = ("item->user", "user->item")


def level_of(folder: Path) -> float:
    """The train fraction of a compare folder's dataset (1 unless it is a -train<F> variant)."""
    path = folder / "compare.json"
    info = check_record(read_json(path), {"dataset": Field(str, required=False)}, str(path), ConfigError, RECORD_HINT, extra_ok=True)
    m = VARIANT.fullmatch(info.get("dataset", ""))
    return float(m["train"]) if m and m["train"] else 1.0


def fused_at_best(cell_dir: Path, best_epoch: int) -> dict[str, float]:
    """The cell's fused shares per direction (mean over modalities) at its best epoch; empty
    for a model that records none."""
    path = cell_dir / "history.csv"
    if not path.is_file():
        return {}
    row = next((r for r in read_csv(path, required=("epoch",), numeric=("fused/",), integers=("epoch",))
                if int(r["epoch"]) == best_epoch), None)
    if row is None:
        return {}
    out = {}
    for d in DIRECTIONS:
        values = [float(v) for k, v in row.items() if k.startswith("fused/") and k.endswith(f"/{d}") and v != ""]
        if values:
            out[f"fused {d}"] = float(np.mean(values))
    return out


def sparsity_rows(folders: list[Path]) -> list[dict[str, Any]]:
    """Per level and model: seeds, test R@10 and NDCG@10 mean and std, and the fused shares."""
    from ego_dgl.study.cells import read_cells

    rows = []
    for folder in folders:
        if not (folder / "cells.csv").is_file():
            raise ConfigError(f"{folder}: not a compare folder with finished cells (no cells.csv)")
        level = level_of(folder)
        by_model: dict[str, list[dict[str, Any]]] = {}
        for cell in read_cells(folder, ("best_epoch", "test/recall@10", "test/ndcg@10")):
            by_model.setdefault(cell.get("name", cell["key"]), []).append(
                cell | fused_at_best(folder / "cells" / cell["key"], int(cell["best_epoch"])))
        for model, cells in by_model.items():
            row: dict[str, Any] = {"train_fraction": level, "model": model, "seeds": len(cells)}
            for m in ("recall@10", "ndcg@10"):
                values = [float(c[f"test/{m}"]) for c in cells]
                row[f"{m}_mean"], row[f"{m}_std"] = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            for d in DIRECTIONS:
                shares = [c[f"fused {d}"] for c in cells if f"fused {d}" in c]
                row[f"fused {d}"] = float(np.mean(shares)) if shares else ""
            rows.append(row)
    return sorted(rows, key=lambda r: (r["model"], r["train_fraction"]))


def plot_sparsity(rows: list[dict[str, Any]], metric: str = "recall@10") -> Any:
    """Mean test `metric` against the train fraction (log x), one line per model, std bars."""
    with pyplot() as plt:
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        for model in dict.fromkeys(r["model"] for r in rows):
            mine = [r for r in rows if r["model"] == model]
            ax.errorbar([r["train_fraction"] for r in mine], [r[f"{metric}_mean"] for r in mine],
                        yerr=[r[f"{metric}_std"] for r in mine], marker="o", capsize=2, label=model)
        ax.set_xscale("log")
        levels = sorted({r["train_fraction"] for r in rows})
        ax.set_xticks(levels, [f"{x:.0%}" for x in levels])
        ax.set_xlabel("share of each user's training interactions kept")
        ax.set_ylabel(f"test {metric}")
        ax.legend(fontsize=8)
    return fig


def write_sparsity(folders: list[Path], out: Path) -> tuple[Path, Path]:
    """sparsity.csv and sparsity.png in folder `out` (created if missing)."""
    rows = sparsity_rows(folders)
    if not rows:
        raise ConfigError("no finished cell in the given compare folders")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "sparsity.csv", rows)
    save_png(plot_sparsity(rows), out / "sparsity.png")
    return out / "sparsity.csv", out / "sparsity.png"
