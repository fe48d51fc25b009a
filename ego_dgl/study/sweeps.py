"""The paper's sensitivity studies: `sweep-layers` (Fig. 4: K with L fixed, L with K fixed,
for EgoGCN, GM and NA) and `sweep-eps` (Fig. 3: the hard threshold eps), on the cell
engine they share with `egodgl compare` (`ego_dgl.study.cells`).

A sweep lives in <out>/sweeps/<name>/: sweep.json (the options every cell shares),
cells.csv (one row per finished cell: its settings, seed, best epoch and metrics),
summary.csv (mean and std over seeds) and a PNG. Each cell trains in its own run folder
under cells/; rerunning the same command skips the finished cells and resumes an
interrupted one from its last checkpoint (`cells.run_cells`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ego_dgl.data.dataset import Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.evaluate import protocol_label
from ego_dgl.runs import pyplot, save_png, slug, write_csv
from ego_dgl.study import cells as engine
from ego_dgl.train.defaults import dataset_name, resolve_options
from ego_dgl.train.trainer import resolve_device

KINDS = ("layers", "eps")
FUSION_NAMES = {"ego": "EgoGCN", "gm": "GM", "na": "NA"}
PLOT_METRICS = ("recall@10", "ndcg@10")
RECORDED = ("precision@10", "recall@10", "ndcg@10", "hit@10")


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep: the swept value, the variant and the seed."""

    series: str  # "K", "L" or "eps": which axis this cell belongs to
    fusion: str
    layers_mm: int
    layers_id: int
    eps: float | None
    seed: int

    @property
    def key(self) -> str:
        """A folder-safe id; equal settings give equal keys whatever the series."""
        eps = "" if self.eps is None else f"-eps{self.eps:g}"
        return f"{self.fusion}-K{self.layers_mm}-L{self.layers_id}{eps}-s{self.seed}"

    @property
    def x(self) -> float:
        return {"K": self.layers_mm, "L": self.layers_id, "eps": self.eps}[self.series]

    def options(self) -> dict[str, Any]:
        """The model options this cell sets over the sweep's shared ones."""
        opts: dict[str, Any] = {"fusion": self.fusion, "layers_mm": self.layers_mm, "layers_id": self.layers_id, "seed": self.seed}
        if self.eps is not None:
            opts.update(mode="hard", eps=self.eps)
        return opts

    def given(self, shared: dict[str, Any]) -> dict[str, Any]:
        """Every option the cell trains with: the sweep's shared ones, then its own."""
        return {**shared, **self.options()}

    def settings(self) -> dict[str, Any]:
        """cells.csv's columns on what the cell is."""
        return {"series": self.series, "fusion": self.fusion, "layers_mm": self.layers_mm, "layers_id": self.layers_id,
                "eps": "" if self.eps is None else self.eps, "seed": self.seed}


def layer_cells(fusions: list[str], k_values: list[int], l_values: list[int], k_fixed: int, l_fixed: int, seeds: list[int]) -> list[Cell]:
    """Fig. 4's grid: K over k_values with L = l_fixed, and L over l_values with K = k_fixed."""
    cells = [Cell("K", f, k, l_fixed, None, s) for f in fusions for k in k_values for s in seeds]
    cells += [Cell("L", f, k_fixed, lv, None, s) for f in fusions for lv in l_values for s in seeds]
    return cells


def eps_cells(values: list[float], k_fixed: int, l_fixed: int, seeds: list[int]) -> list[Cell]:
    """Fig. 3's grid: EGO-hard at every eps, K and L fixed."""
    return [Cell("eps", "ego", k_fixed, l_fixed, float(e), s) for e in values for s in seeds]


def summarize(cells: list[Cell], rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of the test metrics per series, variant and value, in the
    order the cells were listed (`cells.summarise`)."""
    members: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for cell in cells:
        members.setdefault((cell.series, cell.fusion, cell.x), []).append(rows[cell.key])
    groups = {k: ({"series": k[0], "fusion": k[1], "x": k[2], "seeds": len(rs)}, rs) for k, rs in members.items()}
    return engine.summarise(groups, RECORDED)


def plot(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    """One panel per (metric, series): test metric against the swept value, one line per
    variant with std error bars, like the paper's Fig. 3 and 4."""
    series = list(dict.fromkeys(e["series"] for e in summary))
    axis_names = {"K": "K (multimodal layers, L fixed)", "L": "L (ID layers, K fixed)", "eps": "eps (hard threshold)"}
    with pyplot() as plt:
        fig, axes = plt.subplots(len(PLOT_METRICS), len(series), figsize=(4.2 * len(series), 3.2 * len(PLOT_METRICS)),
                                 squeeze=False)
        for col, s in enumerate(series):
            for row, metric in enumerate(PLOT_METRICS):
                ax = axes[row][col]
                for fusion in dict.fromkeys(e["fusion"] for e in summary if e["series"] == s):
                    pts = [e for e in summary if e["series"] == s and e["fusion"] == fusion]
                    ax.errorbar([e["x"] for e in pts], [e[f"{metric}_mean"] for e in pts],
                                yerr=[e[f"{metric}_std"] for e in pts], marker="o", capsize=3, label=FUSION_NAMES[fusion])
                ax.set_xticks(sorted({e["x"] for e in summary if e["series"] == s}))
                ax.set_xlabel(axis_names[s])
                ax.set_ylabel(f"test {metric}")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=8)
        fig.suptitle(title, fontsize=9)
        save_png(fig, path)


def sweep_folder(out: str | Path | None, kind: str, dataset: str, name: str | None) -> Path:
    """<out or ./results>/sweeps/<name or kind-dataset> (`cells.study_folder`)."""
    return engine.study_folder(out, "sweeps", name, f"{kind}-{slug(dataset)}")


def run_sweep(
    ds: Dataset, kind: str, cells: list[engine.Planned], shared: dict[str, Any], folder: Path, on_cell: engine.CellHook | None = None,
    display: str = "off", jobs: int = 1,
) -> list[dict[str, Any]]:
    """Train every cell (planned over `shared`, the options every cell uses) not yet in
    cells.csv, then write summary.csv and the PNG; returns the summary. `on_cell` and
    `jobs` as in `cells.run_cells`; `display` is each cell's progress display."""
    engine.check_study_options(folder, {"kind": kind, **shared}, "sweep.json")
    rows = engine.run_cells(ds, cells, shared, folder, on_cell, display, jobs)
    summary = summarize([p.cell for p in cells], rows)
    write_csv(folder / "summary.csv", summary)
    label = protocol_label(shared.get("protocol", "full"))
    title = f"{'Fig. 4 layers' if kind == 'layers' else 'Fig. 3 eps'} sweep on {shared['dataset']}: test at best epoch, {label}"
    plot(summary, folder / f"sweep-{kind}.png", title)
    return summary


def base_layers(dataset: str) -> tuple[int, int]:
    """The dataset's default (K, L): the values held fixed while the other one varies."""
    _, model_cfg, _, _ = resolve_options({"dataset": dataset})
    return model_cfg.layers_mm, model_cfg.layers_id


def plan_sweep(kind: str, opts: dict[str, Any]) -> tuple[dict[str, Any], list[engine.Planned]]:
    """The shared options and the planned cells of a sweep from the command's options;
    every cell's options are resolved, and a bad one refused, before anything trains."""
    dataset = dataset_name(opts)
    shared, seeds = engine.shared_options(dataset, opts), engine.seed_list(opts, 1)
    k_default, l_default = base_layers(dataset)
    k_fixed, l_fixed = opts.get("k_fixed") or k_default, opts.get("l_fixed") or l_default
    if kind == "layers":
        fusions = engine.parse_values(opts.get("fusions", "ego,gm,na"), str, "--fusions")
        k_values = engine.parse_values(opts.get("k_values", "1,2,3,4"), int, "--k-values")
        l_values = engine.parse_values(opts.get("l_values", "1,2,3"), int, "--l-values")
        engine.check_cell_count(len(fusions) * (len(k_values) + len(l_values)) * len(seeds))
        cells = layer_cells(fusions, k_values, l_values, k_fixed, l_fixed, seeds)
    else:
        values = engine.parse_values(opts.get("values", "0.3,0.4,0.5,0.6,0.7"), float, "--values")
        engine.check_cell_count(len(values) * len(seeds))
        cells = eps_cells(values, k_fixed, l_fixed, seeds)
    return shared, engine.Planner(shared).plan(cells)


def launch_sweep(kind: str, opts: dict[str, Any], progress: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """Plan, load the dataset once, and run (or finish) a sweep with a progress display
    over its cells; returns the sweep folder and the summary."""
    from ego_dgl.data import load_dataset

    if kind not in KINDS:
        raise ConfigError(f"unknown sweep {kind!r}; use one of {', '.join(KINDS)}")
    shared, cells = plan_sweep(kind, opts)
    resolve_device(shared.get("device", "auto"))
    folder = sweep_folder(opts.get("out"), kind, dataset_name(opts), opts.get("name"))
    ds = load_dataset(shared["dataset"], progress=progress)
    with engine.CellProgress(f"sweep {kind}", len(cells), progress) as display:
        summary = run_sweep(ds, kind, cells, shared, folder, on_cell=display, display=display.cell_display, jobs=opts.get("jobs", 1))
    return folder, summary
