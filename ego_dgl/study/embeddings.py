"""`egodgl plot-embeddings` (the paper's Fig. 5): t-SNE of a few users and their held-out
items in the tables a model scores with (Eq. 12), before propagation (`input_tables`)
and after (`final_tables`), one column per run; and the same picture as figures.

The figures: for each chosen user, the distances (Euclidean and cosine, in the model's
own space, not t-SNE's) to its held-out items and to as many random items it never
interacted with (seeded); per run and stage, the mean over all held-out (user, item)
pairs divided by the mean over all random pairs. A ratio below 1 puts the user's
relevant items nearer than unseen ones; a lower ratio after than before means
propagation pulled them closer.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ego_dgl.data.dataset import CSR, Dataset
from ego_dgl.errors import ConfigError
from ego_dgl.runs import (
    DEFAULT_RESULTS,
    check_run_dir,
    pyplot,
    save_png,
    write_csv,
    write_json,
)
from ego_dgl.train.records import load_run_config

MIN_HELD_OUT = 3  # a user is plotted only with at least this many held-out items
STAGES = ("before", "after")
METRICS = ("euclidean", "cosine")


@dataclass(frozen=True)
class Selection:
    """The chosen users (sorted), each one's held-out items in the split and as many
    random items the user has no interaction with in any split."""

    split: str
    seed: int
    users: list[int]
    held_out: list[list[int]]
    random: list[list[int]]


def choose_users(ds: Dataset, split: str, count: int, seed: int) -> Selection:
    """`count` users drawn with `seed` among those with >= MIN_HELD_OUT items in `split`,
    with their held-out items and a seeded sample of items they never interacted with."""
    if count < 1:
        raise ConfigError(f"--users must be at least 1, got {count}")
    pairs = ds.split(split)
    held = CSR.from_pairs(ds.num_users, pairs[:, 0], pairs[:, 1])
    eligible = np.flatnonzero(np.diff(held.indptr) >= MIN_HELD_OUT)
    if len(eligible) < count:
        raise ConfigError(
            f"only {len(eligible)} users have at least {MIN_HELD_OUT} {split} items in {ds.name}; "
            f"pass --users {len(eligible)} or fewer, or another --split" if len(eligible) else
            f"no user has at least {MIN_HELD_OUT} {split} items in {ds.name}; try another --split"
        )
    rng = np.random.default_rng(seed)
    users = sorted(int(u) for u in rng.choice(eligible, count, replace=False))
    everything = np.concatenate([ds.train, ds.valid, ds.test])
    seen = CSR.from_pairs(ds.num_users, everything[:, 0], everything[:, 1])
    random = []
    for u in users:
        unseen = np.setdiff1d(np.arange(ds.num_items), seen.row(u))
        random.append(sorted(int(i) for i in rng.choice(unseen, min(len(held.row(u)), len(unseen)), replace=False)))
    return Selection(split, seed, users, [[int(i) for i in held.row(u)] for u in users], random)


def euclidean(user: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Euclidean distance from one user row [D] to each item row [n, D]."""
    return np.linalg.norm(items - user, axis=1)


def cosine(user: np.ndarray, items: np.ndarray) -> np.ndarray:
    """1 - cosine similarity from one user row to each item row; a zero row has
    similarity 0 (distance 1) to everything."""
    norms = np.linalg.norm(items, axis=1) * np.linalg.norm(user)
    sims = np.divide(items @ user, norms, out=np.zeros(len(items)), where=norms > 0)
    return 1.0 - sims


DISTANCES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"euclidean": euclidean, "cosine": cosine}


def stage_figures(users: np.ndarray, items: np.ndarray, sel: Selection) -> dict[str, Any]:
    """Mean distances to held-out and to random items and their ratio, per metric, over
    every (user, item) pair of the selection, in the space of the tables given (the
    ratio is None when every random item lies at distance 0)."""
    out: dict[str, Any] = {"width": int(users.shape[1])}
    for name, distance in DISTANCES.items():
        held = np.concatenate([distance(users[u], items[h]) for u, h in zip(sel.users, sel.held_out)])
        rand = np.concatenate([distance(users[u], items[r]) for u, r in zip(sel.users, sel.random)])
        ratio = float(held.mean() / rand.mean()) if rand.mean() > 0 else None  # None: every random item at distance 0
        out[name] = {"held_out": float(held.mean()), "random": float(rand.mean()), "ratio": ratio}
    return out


def tsne_points(users: np.ndarray, items: np.ndarray, sel: Selection, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """2-d t-SNE coordinates (init='pca', random_state=seed) of the chosen users [U, 2]
    and of each one's held-out items; tables narrower than 2 are padded with zero
    columns, which leaves every distance unchanged."""
    from sklearn.manifold import TSNE

    rows = np.concatenate([users[sel.users], *(items[h] for h in sel.held_out)])
    if rows.shape[1] < 2:
        rows = np.pad(rows, ((0, 0), (0, 2 - rows.shape[1])))
    perplexity = min(30.0, (len(rows) - 1) / 3)
    coords = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(rows)
    bounds = np.cumsum([len(sel.users), *(len(h) for h in sel.held_out)])
    return coords[: len(sel.users)], np.split(coords[len(sel.users) :], bounds[1:-1] - bounds[0])


@dataclass
class RunEmbedding:
    """One run's part of the figure: its title, per stage the figures and the t-SNE points."""

    run_dir: Path
    title: str
    figures: dict[str, dict[str, Any]]
    points: dict[str, tuple[np.ndarray, list[np.ndarray]]]


def run_title(config: dict[str, Any], label: str) -> str:
    """The model's registry name and, when it adds something, its variant label."""
    name = config.get("model_name", "egogcn")
    return name if label == name else f"{name} ({label})"


def dataset_of_runs(run_dirs: list[Path]) -> dict[str, Any]:
    """The dataset record every run's config.json shares, or a ConfigError naming the
    first run whose dataset fingerprint differs from the first run's."""
    first = load_run_config(run_dirs[0])["dataset"]
    for run_dir in run_dirs[1:]:
        other = load_run_config(run_dir)["dataset"]
        if other["fingerprint"] != first["fingerprint"]:
            raise ConfigError(
                f"runs {run_dirs[0]} and {run_dir} were trained on different datasets "
                f"({first.get('source')!r} {first['fingerprint']} vs {other.get('source')!r} {other['fingerprint']}); "
                "plot runs of one dataset together"
            )
    return first


def as_numpy(tables: Any) -> tuple[np.ndarray, np.ndarray]:
    """A Tables' user and item tables as float64 numpy arrays."""
    return tables.users.detach().cpu().double().numpy(), tables.items.detach().cpu().double().numpy()


def embed_run(run: Any, sel: Selection, seed: int, on_stage: Callable[[str], None] | None = None) -> RunEmbedding:
    """Figures and t-SNE points of a loaded run before and after propagation."""
    with torch.no_grad():
        tables = {"before": as_numpy(run.model.input_tables()), "after": as_numpy(run.model.final_tables())}
    figures, points = {}, {}
    for stage in STAGES:
        figures[stage] = stage_figures(*tables[stage], sel)
        points[stage] = tsne_points(*tables[stage], sel, seed)
        if on_stage:
            on_stage(stage)
    return RunEmbedding(run.run_dir, run_title(run.config, run.model_cfg.label()), figures, points)


def widths_note(runs: list[RunEmbedding]) -> str | None:
    """A sentence naming the runs whose tables are not as wide before as after."""
    differ = [f"{r.title} {r.figures['before']['width']} vs {r.figures['after']['width']}" for r in runs
              if r.figures["before"]["width"] != r.figures["after"]["width"]]
    if not differ:
        return None
    return f"widths differ before/after ({'; '.join(differ)}): distances are computed within each space"


def plot(runs: list[RunEmbedding], sel: Selection, path: Path, title: str, caption: str) -> None:
    """Two rows (before / after) and one column per run: users as stars, their held-out
    items as points of the same colour, like the paper's Fig. 5."""
    with pyplot() as plt:
        colours = plt.get_cmap("tab10" if len(sel.users) <= 10 else "tab20")
        fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 8.4), squeeze=False)
        for col, run in enumerate(runs):
            for row, stage in enumerate(STAGES):
                ax = axes[row][col]
                user_xy, item_xy = run.points[stage]
                for k, user in enumerate(sel.users):
                    colour = colours(k % colours.N)
                    ax.scatter(item_xy[k][:, 0], item_xy[k][:, 1], s=18, color=colour, alpha=0.8)
                    ax.scatter(user_xy[k, 0], user_xy[k, 1], s=220, marker="*", color=colour, edgecolors="black", linewidths=0.6,
                               label=f"user {user}")
                ratio = run.figures[stage]["euclidean"]["ratio"]
                shown = "-" if ratio is None else f"{ratio:.2f}"
                ax.set_title(f"{run.title}: {stage} propagation\n{run.run_dir.name} (held/random distance {shown})", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.suptitle(title, fontsize=9)
        fig.text(0.5, 0.005, textwrap.fill(caption, 75 * len(runs)), ha="center", va="bottom", fontsize=7)
        save_png(fig, path, rect=(0, 0.05, 1, 0.97))


def figure_rows(runs: list[RunEmbedding]) -> list[dict[str, Any]]:
    """The CSV's rows: one per run and stage."""
    rows = []
    for run in runs:
        for stage in STAGES:
            f = run.figures[stage]
            row: dict[str, Any] = {"run": str(run.run_dir), "model": run.title, "stage": stage, "width": f["width"]}
            for metric in METRICS:
                row.update({f"{metric}_{k}": f[metric][k] for k in ("held_out", "random", "ratio")})
            rows.append(row)
    return rows


def output_paths(out: str | Path | None, split: str, seed: int, overwrite: bool) -> tuple[Path, Path, Path]:
    """The PNG and its sibling .json and .csv; existing files are refused without
    `overwrite` (the tool never replaces a file it may not have written)."""
    png = Path(out) if out is not None else DEFAULT_RESULTS / "plots" / f"embeddings-{split}-seed{seed}.png"
    if png.suffix.lower() != ".png":
        raise ConfigError(f"--out {png} must name a .png file (the .json and .csv go beside it)")
    paths = (png, png.with_suffix(".json"), png.with_suffix(".csv"))
    if png.parent.exists() and not png.parent.is_dir():
        raise ConfigError(f"--out {png}: {png.parent} is not a folder")
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another --out")
    return paths


@dataclass
class EmbeddingPlot:
    """What the command made: the selection, each run's part and the files written."""

    selection: Selection
    runs: list[RunEmbedding]
    paths: tuple[Path, Path, Path]
    note: str | None


def plot_embeddings(
    run_dirs: list[str | Path], users: int = 8, seed: int = 0, split: str = "test", out: str | Path | None = None,
    overwrite: bool = False, device: str = "auto", progress: bool = True,
) -> EmbeddingPlot:
    """Check every input, choose the users, embed every run before and after propagation,
    then write the PNG, the JSON and the CSV (each atomically, only once all is computed)."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ego_dgl.train.loading import load_run
    from ego_dgl.untrusted import SafeConsole, printable

    paths = output_paths(out, split, seed, overwrite)
    dirs = [check_run_dir(r) for r in run_dirs]
    dataset = dataset_of_runs(dirs)
    first = load_run(dirs[0], device)
    sel = choose_users(first.ds, split, users, seed)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    embedded: list[RunEmbedding] = []
    with Progress(*columns, console=SafeConsole(stderr=True, emoji=False), disable=not progress) as bar:
        task = bar.add_task("t-SNE", total=2 * len(dirs))
        for k, run_dir in enumerate(dirs):
            run = first if k == 0 else load_run(run_dir, device)
            embedded.append(embed_run(run, sel, seed, lambda stage, name=run_dir.name: bar.update(
                task, advance=1, description=escape(printable(f"t-SNE {name} {stage}")))))
    note = widths_note(embedded)
    caption = (f"t-SNE (init pca, seed {seed}) of the tables the model scores with (Eq. 12); stars: users, points: "
               f"their held-out {split} items; held/random: mean Euclidean distance to held-out over random unseen items")
    caption += f"; {note}" if note else ""
    title = f"Fig. 5 embeddings on {dataset.get('source', dataset.get('name'))}: {len(sel.users)} users, {split} split"
    png, json_path, csv_path = paths
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(embedded, sel, png, title, caption)
    write_json(json_path, {
        "command": "plot-embeddings", "dataset": {k: dataset.get(k) for k in ("source", "name", "fingerprint")},
        "split": split, "seed": seed, "min_held_out": MIN_HELD_OUT,
        "users": sel.users, "held_out": sel.held_out, "random": sel.random, "note": note,
        "runs": [{"run": str(r.run_dir), "model": r.title, **r.figures} for r in embedded],
    })
    write_csv(csv_path, figure_rows(embedded))
    return EmbeddingPlot(sel, embedded, paths, note)
