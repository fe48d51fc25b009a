"""`egodgl compare`: models side by side on one dataset, like the paper's Table 3 (and
Table 4's ablations, which are presets): every model of a list trained with the same
seeds, the test figures at the best validation epoch as mean ± std over the seeds, the
relative improvement of the best EgoGCN variant over the best baseline, and a paired test
across the seeds.

A name is a registry model or preset (`egodgl models`), optionally followed by options as
`+KEY=VALUE`, e.g. `egogcn-hard+threshold=relative+eps=2` or `lightgcn+layers=3+lr=0.001`
(no shell quoting needed; a value may itself hold `+`, as in `branches=id+mm`). Each model
trains with its own defaults over the dataset's training profile. `--tune KEY=v1,v2`
(repeatable) runs, per model that has the option (and does not fix it by its name or
preset), the grid on the first seed, keeps the values with the best VALIDATION recall@10
(recall@20 under --protocol mmrec; never test) and trains every seed with them. Under
--protocol mmrec the tables show P/R/NDCG at 5, 10, 20 and 50.

The comparison lives in <out>/compare/<name>/: compare.json (the options every cell
shares), cells/<key>/ (one run folder per model, tuned values and seed), cells.csv,
tuning.csv (the grid cells and the choice), summary.csv, paired.csv (improvement and
p-values per metric, of the headline pair and of each --pair A:B), table.md (the table, its caption and the command) and compare.png.
Rerunning skips finished cells and resumes an interrupted one (`cells.run_cells`).
"""

from __future__ import annotations

import itertools
import math
import re
import shlex
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ego_dgl.errors import ConfigError
from ego_dgl.evaluate import MMREC_KS, protocol_label, select_metric
from ego_dgl.model.registry import MODELS, config_fields, model_names, resolve_model
from ego_dgl.runs import pyplot, save_png, slug, write_atomic, write_csv
from ego_dgl.study.cells import (
    SHARED_OPTIONS,
    CellProgress,
    Planner,
    check_cell_count,
    check_study_options,
    finished_rows,
    parse_values,
    run_cells,
    seed_list,
    shared_options,
    study_folder,
    summarise,
)
from ego_dgl.study.groups import (
    GROUP_METRICS,
    group_markdown,
    group_summary,
    member_values,
)
from ego_dgl.train.config_file import convert_text
from ego_dgl.train.defaults import (
    TrainConfig,
    flag,
    option_types,
    profile_for,
    resolve_options,
)

SET_BY_COMPARE = ("dataset", "out", "model", "seed")  # never per model: compare sets them
NOT_TUNABLE = (*SET_BY_COMPARE, "device", "protocol", "backend")
TRAIN_KEYS = frozenset(f.name for f in fields(TrainConfig))
TABLE_METRICS = ("precision@10", "recall@10", "ndcg@10", "precision@20", "recall@20", "ndcg@20")
METRIC_TITLES = {"precision": "P", "recall": "R", "ndcg": "NDCG"}
EGOGCN, FLOOR = "egogcn", "pop"
# `+` starts an option only where `KEY=` follows, so values such as id+mm stay whole
OPTION_START = re.compile(r"\+(?=[A-Za-z_][A-Za-z0-9_-]*=)")
SAFE_LABEL = re.compile(r"[A-Za-z0-9_.+=-]+")


def table_metrics(protocol: str) -> tuple[str, ...]:
    """The table's metrics: P/R/NDCG at 10 and 20, or at MMRec's 5/10/20/50 under its protocol."""
    ks = MMREC_KS if protocol == "mmrec" else (10, 20)
    return tuple(f"{m}@{k}" for k in ks for m in ("precision", "recall", "ndcg"))


def protocol_of(shared: dict[str, Any]) -> str:
    return shared.get("protocol", "full")


def show(value: Any) -> str:
    """An option value as names and keys write it: 0.001, 1e-05, true, id+mm."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def assignments(pairs: tuple[tuple[str, Any], ...]) -> str:
    """'+lr=0.001+eps=0.2' for (('lr', 0.001), ('eps', 0.2))."""
    return "".join(f"+{k}={show(v)}" for k, v in pairs)


def metric_title(metric: str) -> str:
    """'R@10' for 'recall@10'."""
    name, k = metric.split("@")
    return f"{METRIC_TITLES[name]}@{k}"


@dataclass(frozen=True)
class Entry:
    """One name of --models: a model or preset and the options written after it."""

    name: str  # registry model or preset
    model: str  # the registry model it means
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return self.name + assignments(self.overrides)

    @property
    def role(self) -> str:
        """'egogcn' (an EgoGCN variant), 'floor' (popularity) or 'baseline'."""
        return EGOGCN if self.model == EGOGCN else "floor" if self.model == FLOOR else "baseline"


def parse_entry(text: str) -> Entry:
    """A --models name such as `egogcn-hard+threshold=relative+eps=2`, options typed."""
    name, *parts = OPTION_START.split(text.strip())
    try:
        model, _ = resolve_model(name)
    except ConfigError:
        raise ConfigError(
            f"--models: {name!r} is not a model or preset ({', '.join(model_names())}); write options after it as +KEY=VALUE"
        ) from None
    types, overrides = option_types(), {}
    for part in parts:
        raw, _, value = part.partition("=")
        key = raw.replace("-", "_")
        if key in SET_BY_COMPARE:
            raise ConfigError(f"--models {text}: {flag(key)} is the same for every model; drop +{raw}=... (compare sets it)")
        if key not in types:
            raise ConfigError(f"--models {text}: unknown option {raw!r}; egodgl models lists each model's options")
        if key in overrides:
            raise ConfigError(f"--models {text}: {raw} is given twice")
        overrides[key] = convert_text(key, value, types[key], f"--models {text}: {raw}")
    entry = Entry(name, model, tuple(overrides.items()))
    if not SAFE_LABEL.fullmatch(entry.label):
        raise ConfigError(f"--models {text}: option values may use letters, digits and . _ + = - only")
    return entry


def parse_models(text: str) -> list[Entry]:
    """The comma-separated --models list; a name given twice is refused."""
    entries = [parse_entry(t) for t in str(text).split(",") if t.strip()]
    if not entries:
        raise ConfigError("--models needs at least one name, e.g. --models pop,lightgcn,egogcn-hard")
    labels = [e.label for e in entries]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ConfigError(f"--models lists {twice[0]} twice")
    return entries


def parse_tune(items: tuple[str, ...] | list[str]) -> dict[str, list[Any]]:
    """--tune KEY=v1,v2 (repeatable) as {key: typed values}."""
    types, grid = option_types(), {}
    for item in items:
        raw, sep, text = item.partition("=")
        key = raw.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--tune takes KEY=V1,V2,..., e.g. --tune lr=1e-3,2e-4; got {item!r}")
        if key in NOT_TUNABLE or key not in types:
            raise ConfigError(f"--tune {raw}: not an option that can be tuned (any model or training option but {', '.join(NOT_TUNABLE)})")
        if key in grid:
            raise ConfigError(f"--tune {raw} is given twice; list all its values in one --tune {raw}=v1,v2")
        values = parse_values(text, str, f"--tune {raw}")
        grid[key] = list(dict.fromkeys(convert_text(key, v, types[key], f"--tune {raw}") for v in values))
    return grid


@dataclass(frozen=True)
class ModelCell:
    """One training run of a comparison: a --models entry, the tuned values it tries
    (empty without --tune) and a seed."""

    entry: Entry
    tuned: tuple[tuple[str, Any], ...]
    seed: int

    @property
    def key(self) -> str:
        return f"{self.entry.label}{assignments(self.tuned)}-s{self.seed}"

    def given(self, shared: dict[str, Any]) -> dict[str, Any]:
        """The shared options the model has, then the name's options, the tuned values, the seed."""
        own = set(config_fields(self.entry.model)) | TRAIN_KEYS | {"dataset"}
        return {**{k: v for k, v in shared.items() if k in own}, "model": self.entry.name, **dict(self.entry.overrides),
                **dict(self.tuned), "seed": self.seed}

    def settings(self) -> dict[str, Any]:
        return {"name": self.entry.label, "model": self.entry.model, "tuned": assignments(self.tuned)[1:], "seed": self.seed}


def tuned_keys(entry: Entry, grid: dict[str, list[Any]], shared: dict[str, Any]) -> list[str]:
    """The --tune keys that mean something for this entry: options of its model (training
    options only if it trains) that neither its name nor its preset fixes, nor its variant
    ignores (e.g. eps with --mode soft)."""
    fixed = {k for k, _ in entry.overrides} | set(resolve_model(entry.name)[1])
    own = set(config_fields(entry.model)) | (TRAIN_KEYS if MODELS[entry.model].model_type().trainable else set())
    keys = [k for k in grid if k in own and k not in fixed]
    if keys:
        _, cfg, _, _ = resolve_options(ModelCell(entry, (), 0).given(shared))
        keys = [k for k in keys if k not in cfg.ignored_options()]
    return keys


@dataclass
class Plan:
    """What a comparison trains: shared options, entries, seeds and the --tune grid."""

    shared: dict[str, Any]
    entries: list[Entry]
    seeds: list[int]
    grid: dict[str, list[Any]]
    tuned: dict[str, list[str]]  # entry label -> the grid keys it tunes
    planner: Planner  # every cell's options, resolved once

    def grid_cells(self, entry: Entry) -> list[ModelCell]:
        """The entry's tuning cells on the first seed (none when it tunes nothing)."""
        keys = self.tuned[entry.label]
        if not keys:
            return []
        combos = itertools.product(*(self.grid[k] for k in keys))
        return [ModelCell(entry, tuple(zip(keys, combo)), self.seeds[0]) for combo in combos]

    def final_cells(self, entry: Entry, choice: tuple[tuple[str, Any], ...]) -> list[ModelCell]:
        return [ModelCell(entry, choice, seed) for seed in self.seeds]


def plan_compare(opts: dict[str, Any]) -> Plan:
    """The plan from the command's options; every cell's options are resolved (and a bad
    one refused) before anything trains."""
    shared, seeds = shared_options(opts.get("dataset") or "ml100k", opts), seed_list(opts, 5)
    entries = parse_models(opts.get("models") or "")
    grid = parse_tune(opts.get("tune") or ())
    tuned = {e.label: tuned_keys(e, grid, shared) for e in entries}
    unused = [k for k in grid if not any(k in keys for keys in tuned.values())]
    if unused:
        raise ConfigError(f"--tune {unused[0]}: none of the models has this option free to tune (a name or preset may fix it)")
    check_cell_count(sum(math.prod(len(grid[k]) for k in tuned[e.label]) * bool(tuned[e.label]) + len(seeds) for e in entries))
    plan = Plan(shared, entries, seeds, grid, tuned, Planner(shared))
    for entry in entries:
        plan.planner.plan(plan.grid_cells(entry) or plan.final_cells(entry, ()))
    return plan


def choose(cells: list[ModelCell], rows: dict[str, dict[str, Any]], protocol: str = "full") -> ModelCell:
    """The grid cell with the best validation selection metric (recall@10; recall@20
    under --protocol mmrec), the first of equals."""
    return max(cells, key=lambda c: float(rows[c.key][f"valid/{select_metric(protocol)}"]))


def tuning_rows(cells: list[ModelCell], rows: dict[str, dict[str, Any]], chosen: ModelCell, protocol: str = "full") -> list[dict[str, Any]]:
    """tuning.csv's rows of one entry: each grid cell's values, validation figures, choice."""
    watched = dict.fromkeys(("recall@10", "ndcg@10", select_metric(protocol)))
    return [{"name": c.entry.label, "key": c.key, "seed": c.seed, "tuned": c.settings()["tuned"], **dict(c.tuned),
             **{f"valid/{m}": rows[c.key][f"valid/{m}"] for m in watched}, "chosen": int(c == chosen)}
            for c in cells]


def summarize_entries(
    entries: list[Entry], finals: dict[str, list[ModelCell]], rows: dict[str, dict[str, Any]], protocol: str = "full"
) -> list[dict[str, Any]]:
    """summary.csv: per entry, mean and std (ddof 1; 0 for one seed) over the seeds of
    the test figures at the best validation epoch."""
    groups = {e.label: ({"name": e.label, "model": e.model, "role": e.role, "seeds": len(finals[e.label]),
                         "tuned": finals[e.label][0].settings()["tuned"]}, [rows[c.key] for c in finals[e.label]]) for e in entries}
    out = summarise(groups, table_metrics(protocol))
    for row, (_, members) in zip(out, groups.values()):
        row[f"valid/{select_metric(protocol)}_mean"] = float(np.mean([float(r[f"valid/{select_metric(protocol)}"]) for r in members]))
    return out


def best_pair(summary: list[dict[str, Any]], protocol: str = "full") -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(best EgoGCN variant, best baseline) by mean VALIDATION recall@10 (recall@20 under
    --protocol mmrec), so that picking
    the pair out of many models does not flatter the test figures; popularity is the floor
    and counts as the baseline only when no other baseline is listed. None without both."""
    variants = [e for e in summary if e["role"] == EGOGCN]
    baselines = [e for e in summary if e["role"] == "baseline"] or [e for e in summary if e["role"] == "floor"]
    if not variants or not baselines:
        return None
    best = lambda group: max(group, key=lambda e: e[f"valid/{select_metric(protocol)}_mean"])  # noqa: E731
    return best(variants), best(baselines)


def paired_p(a: list[float], b: list[float]) -> tuple[float | None, float | None]:
    """Two-sided p-values of the paired t-test and the Wilcoxon signed-rank test of a
    against b (same seeds); None with fewer than 2 pairs or when a test is undefined
    (e.g. identical figures)."""
    if len(a) < 2:
        return None, None
    from scipy import stats

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        t = float(stats.ttest_rel(a, b).pvalue)
        try:
            w = float(stats.wilcoxon(a, b).pvalue)
        except ValueError:  # every difference zero
            w = float("nan")
    return (None if math.isnan(t) else t), (None if math.isnan(w) else w)


def paired_rows(variant: str, baseline: str, finals: dict[str, list[ModelCell]], rows: dict[str, dict[str, Any]],
                metrics: tuple[str, ...] = TABLE_METRICS) -> list[dict[str, Any]]:
    """paired.csv: per metric, the two means, the relative improvement in % and the
    p-values across the seeds both have ('n/a' where undefined)."""
    shared = sorted({c.seed for c in finals[variant]} & {c.seed for c in finals[baseline]})
    by_seed = lambda label: {c.seed: rows[c.key] for c in finals[label]}  # noqa: E731
    ours, theirs = by_seed(variant), by_seed(baseline)
    out = []
    for m in metrics:
        a = [float(ours[k][f"test/{m}"]) for k in shared]
        b = [float(theirs[k][f"test/{m}"]) for k in shared]
        t, w = paired_p(a, b)
        mean_a, mean_b = float(np.mean(a)), float(np.mean(b))
        out.append({"metric": m, "variant": variant, "baseline": baseline, "variant_mean": mean_a, "baseline_mean": mean_b,
                    "improvement_pct": 100 * (mean_a - mean_b) / mean_b if mean_b else "n/a",
                    "p_ttest": "n/a" if t is None else t, "p_wilcoxon": "n/a" if w is None else w, "seeds": len(a)})
    return out


def asked_pairs(pairs: tuple[str, ...] | list[str], names: list[str]) -> list[tuple[str, str]]:
    """--pair A:B, each checked to name two models of the table (its names, as printed),
    before anything trains."""
    asked = []
    for text in pairs:
        parts = str(text).split(":")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--pair {text}: give two models of the table as A:B, e.g. --pair egogcn-hard:bpr")
        unknown = next((n for n in parts if n not in names), None)
        if unknown is not None:
            raise ConfigError(f"--pair {text}: {unknown} is not a model of the table; its models: {', '.join(names)}")
        if parts[0] == parts[1]:
            raise ConfigError(f"--pair {text}: a model against itself tests nothing; name two models")
        asked.append((parts[0], parts[1]))
    return asked


def pair_markdown(rows: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[str]:
    """table.md's section of the --pair tests: per pair, A's change over B and the t-test's p per metric."""
    if not rows:
        return []
    head = ["A over B", *(metric_title(m) for m in metrics)]
    lines = ["", "## Paired tests asked for (--pair)", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for start in range(0, len(rows), len(metrics)):
        group = rows[start:start + len(metrics)]
        cells = [f"{fmt_pct(r['improvement_pct'])} (p {fmt_p(r['p_ttest'])})" for r in group]
        lines.append("| " + " | ".join([f"{group[0]['variant']} over {group[0]['baseline']}", *cells]) + " |")
    return [*lines, "", f"%: A's mean over B's; p: two-sided paired t-test across the {rows[0]['seeds']} seeds both share "
            "(the Wilcoxon p in paired.csv).", ""]


def fmt_p(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"


def fmt_pct(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:+.2f}%"


def caption(plan: Plan, summary: list[dict[str, Any]], paired: list[dict[str, Any]], tuning: list[dict[str, Any]]) -> list[str]:
    """The table's caption, one sentence a line."""
    shared = plan.shared
    seeds = ", ".join(map(str, plan.seeds))
    patience = shared.get("patience", TrainConfig.patience)
    watched = select_metric(protocol_of(shared))
    lines = [f"Test figures at the best validation epoch (validation {watched}, patience {patience}), mean ± standard deviation "
             f"(ddof 1) over seeds {seeds}; {protocol_label(shared.get('protocol', 'full'))}."]
    short = [e["name"] for e in summary if e["seeds"] < len(plan.seeds)]
    untrained = [e.label for e in plan.entries if e.label not in {s["name"] for s in summary}]
    if short or untrained:
        lines.append(f"Cells finished so far only (--finished-only): {', '.join(short) or 'no model'} with fewer seeds than asked "
                     f"(the seeds column); not trained yet: {', '.join(untrained) or 'none'}.")
    if paired:
        variant, baseline = paired[0]["variant"], paired[0]["baseline"]
        floor_only = not any(e["role"] == "baseline" for e in summary)
        lines.append(f"%improv.: the best EgoGCN variant ({variant}) over the best baseline ({baseline}), both chosen by mean "
                     f"validation {watched}; pop (popularity) is the floor, shown but not counted as a baseline"
                     + (" unless it is the only one, as here." if floor_only else "."))
        lines.append(f"p: two-sided paired t-test across the {paired[0]['seeds']} seeds both models share (scipy.stats.ttest_rel), the main "
                     "test; the Wilcoxon signed-rank test (scipy.stats.wilcoxon, exact) for reference: with n seeds its smallest "
                     "two-sided p is 2/2^n. n/a: fewer than 2 seeds, or no difference to test.")
    else:
        lines.append("No %improv. or p-values: the list needs an EgoGCN variant and a baseline (or pop).")
    defaults = "MMRec's overall.yaml, then each model's mmrec_defaults (its MMRec yaml)" if protocol_of(shared) == "mmrec" else \
        f"the dataset's {profile_for(shared['dataset'])} training profile"
    defaults += ", then the KEY=VALUE pairs a model's name carries"
    if tuning:
        chosen = "; ".join(f"{r['name']}: {r['tuned']}" for r in tuning if r["chosen"])
        grid = ", ".join(f"{k} in {{{', '.join(show(v) for v in vs)}}}" for k, vs in plan.grid.items())
        lines.append(f"Hyper-parameters: each model's defaults over {defaults}; "
                     f"tuned ({grid}) on seed {plan.seeds[0]} by validation {watched}, never test: {chosen} (tuning.csv).")
    else:
        lines.append(f"Hyper-parameters: each model's defaults over {defaults}.")
    return lines


def markdown(command: str, plan: Plan, summary: list[dict[str, Any]], paired: list[dict[str, Any]], tuning: list[dict[str, Any]]) -> str:
    """table.md: title, the command, the table (with %improv. and p rows) and its caption."""
    metrics = table_metrics(protocol_of(plan.shared))
    head = ["model", "seeds", *(metric_title(m) for m in metrics)]
    lines = [f"# Comparison on {plan.shared['dataset']}", "", f"    {command}", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for e in summary:
        name = e["name"] + (" (floor)" if e["role"] == "floor" else "")
        cells = [f"{e[f'{m}_mean']:.4f} ± {e[f'{m}_std']:.4f}" for m in metrics]
        lines.append("| " + " | ".join([name, str(e["seeds"]), *cells]) + " |")
    if paired:
        lines.append("| " + " | ".join([f"%improv. {paired[0]['variant']} over {paired[0]['baseline']}", "",
                                        *(fmt_pct(r["improvement_pct"]) for r in paired)]) + " |")
        lines.append("| " + " | ".join(["p, paired t-test", "", *(fmt_p(r["p_ttest"]) for r in paired)]) + " |")
        lines.append("| " + " | ".join(["p, Wilcoxon signed-rank", "", *(fmt_p(r["p_wilcoxon"]) for r in paired)]) + " |")
    return "\n".join([*lines, "", *caption(plan, summary, paired, tuning), ""])


ROLE_COLOURS = {EGOGCN: ("tab:red", "EgoGCN variants"), "baseline": ("tab:blue", "baselines"), "floor": ("tab:gray", "popularity (floor)")}


def plot_bars(summary: list[dict[str, Any]], path: Path, title: str, metrics: tuple[str, ...] = TABLE_METRICS) -> None:
    """One panel per metric: a horizontal bar per model, sorted by its mean (best on top),
    the model's name on the axis, std error bars, the paper's variants and the baselines
    told apart by colour."""
    from matplotlib.patches import Patch

    cols = 3
    rows = math.ceil(len(metrics) / cols)
    with pyplot() as plt:
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 0.8 + rows * (0.9 + 0.28 * max(len(summary), 4))),
                                 squeeze=False)
        for ax, metric in zip(axes.flat, metrics):
            ranked = sorted(summary, key=lambda e: float(e[f"{metric}_mean"]))
            y = np.arange(len(ranked))
            ax.barh(y, [float(e[f"{metric}_mean"]) for e in ranked], xerr=[float(e[f"{metric}_std"]) for e in ranked], capsize=2,
                    color=[ROLE_COLOURS[e["role"]][0] for e in ranked], height=0.7)
            ax.set_yticks(y, [e["name"] for e in ranked], fontsize=8)
            ax.set_title(f"test {metric_title(metric)}", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            ax.margins(y=0.01)
        for ax in list(axes.flat)[len(metrics):]:
            ax.set_visible(False)
        roles = [r for r in ROLE_COLOURS if any(e["role"] == r for e in summary)]
        fig.legend(handles=[Patch(color=ROLE_COLOURS[r][0], label=ROLE_COLOURS[r][1]) for r in roles], loc="lower center",
                   ncol=len(roles), fontsize=9, frameon=False)
        fig.suptitle(f"{title}; mean ± std over seeds", fontsize=10)
        save_png(fig, path, rect=(0, 0.04, 1, 1))


def command_line(opts: dict[str, Any]) -> str:
    """The command that made (and remakes) the comparison, from the parsed options."""
    words = ["egodgl", "compare", "--dataset", opts.get("dataset") or "ml100k", "--models", opts["models"],
             "--seeds", str(opts.get("seeds", 5))]
    for key in ("seed", "jobs"):
        if opts.get(key) not in (None, 0 if key == "seed" else 1):
            words += [flag(key), str(opts[key])]
    for key in SHARED_OPTIONS:
        if opts.get(key) is not None:
            words += [flag(key), show(opts[key])]
    for key, option in (("tune", "--tune"), ("pairs", "--pair")):
        for item in opts.get(key) or ():
            words += [option, item]
    for key in ("out", "name"):
        if opts.get(key) is not None:
            words += [flag(key), str(opts[key])]
    return shlex.join(words)


@dataclass
class Comparison:
    """What `launch_compare` leaves: its folder, summary, paired rows and the table."""

    folder: Path
    summary: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    table: str


def compare_folder(out: str | Path | None, dataset: str, name: str | None) -> Path:
    """<out or ./results>/compare/<name or dataset> (`cells.study_folder`)."""
    return study_folder(out, "compare", name, slug(dataset))


def launch_compare(opts: dict[str, Any], progress: bool = True) -> Comparison:
    """Plan and check, load the dataset once, train the tuning grids (first seed), choose
    by validation, train every seed, then write the summary, the paired tests, the table
    and the plot. With opts["finished_only"], train nothing: tabulate the cells finished
    so far (a long study in progress), each model over the seeds it has."""
    from ego_dgl.data import load_dataset
    from ego_dgl.train.trainer import resolve_device

    plan = plan_compare(opts)
    pairs = asked_pairs(opts.get("pairs") or (), [e.label for e in plan.entries])
    shared, jobs = plan.shared, opts.get("jobs", 1)
    folder = compare_folder(opts.get("out"), opts.get("dataset") or "ml100k", opts.get("name"))
    grids = {e.label: plan.grid_cells(e) for e in plan.entries}
    if opts.get("finished_only"):
        if not (folder / "compare.json").exists():
            raise ConfigError(f"--finished-only: {folder} holds no comparison yet; run it without --finished-only first")
        check_study_options(folder, {"kind": "compare", **shared}, "compare.json")
        rows = finished_rows(folder, protocol_of(shared))
        tuning, finals = choose_finals(plan, grids, rows, finished_only=True)
    else:
        resolve_device(shared.get("device", "auto"))
        ds = load_dataset(shared["dataset"], progress=progress)
        check_study_options(folder, {"kind": "compare", **shared}, "compare.json")
        total = sum(map(len, grids.values())) + len(plan.entries) * len(plan.seeds)
        with CellProgress("compare", total, progress) as display:
            train = lambda cells: run_cells(ds, plan.planner.plan(cells), shared, folder, display, display.cell_display, jobs)  # noqa: E731
            rows = train([c for cells in grids.values() for c in cells])
            tuning, finals = choose_finals(plan, grids, rows)
            rows = train([c for cells in finals.values() for c in cells])
    if tuning:
        write_csv(folder / "tuning.csv", tuning)
    protocol = protocol_of(shared)
    summary = summarize_entries([e for e in plan.entries if finals[e.label]], finals, rows, protocol)
    if not summary:
        raise ConfigError(f"--finished-only: no cell of these models has finished in {folder} yet")
    write_csv(folder / "summary.csv", summary)
    pair = best_pair(summary, protocol)
    metrics = table_metrics(protocol)
    paired = paired_rows(pair[0]["name"], pair[1]["name"], finals, rows, metrics) if pair else []
    tabled = {e["name"] for e in summary}
    asked = [r for a, b in pairs if {a, b} <= tabled for r in paired_rows(a, b, finals, rows, metrics)]
    if paired or asked:
        write_csv(folder / "paired.csv", paired + asked)
    table = markdown(command_line(opts), plan, summary, paired, tuning) + cold_tables(folder, summary, pair, finals, rows)
    table += "\n".join(pair_markdown(asked, metrics))
    write_atomic(folder / "table.md", table.encode())
    plot_bars(summary, folder / "compare.png", f"{shared['dataset']}: test at the best validation epoch, {protocol_label(protocol)}",
              table_metrics(protocol))
    return Comparison(folder, summary, paired, table)


def cold_tables(folder: Path, summary: list[dict[str, Any]], pair: tuple[dict[str, Any], dict[str, Any]] | None,
                finals: dict[str, list[ModelCell]], rows: dict[str, dict[str, Any]]) -> str:
    """On a dataset with cold items: cold.csv and table.md's warm/cold section (study/groups.py)."""
    members = {e["name"]: [rows[c.key] for c in finals[e["name"]]] for e in summary}
    cold = group_summary(list(members), members)
    if not cold:
        return ""
    write_csv(folder / "cold.csv", cold)
    both = [m for m in GROUP_METRICS if pair and all(member_values(members[e["name"]], m) for e in pair)]
    paired = paired_rows(pair[0]["name"], pair[1]["name"], finals, rows, tuple(both)) if both else []
    return "\n".join(group_markdown(cold, paired)) + "\n"


def choose_finals(
    plan: Plan, grids: dict[str, list[ModelCell]], rows: dict[str, dict[str, Any]], finished_only: bool = False
) -> tuple[list[dict[str, Any]], dict[str, list[ModelCell]]]:
    """tuning.csv's rows and each entry's cells over the seeds, with the grid values chosen
    on validation; `finished_only` keeps only cells in `rows` (an entry whose grid has no
    finished cell keeps none)."""
    tuning: list[dict[str, Any]] = []
    finals: dict[str, list[ModelCell]] = {}
    for entry in plan.entries:
        grid = grids[entry.label]
        cells = [c for c in grid if c.key in rows]
        protocol = protocol_of(plan.shared)
        chosen = choose(cells, rows, protocol) if cells and (finished_only or len(cells) == len(grid)) else None
        tuning += tuning_rows(cells, rows, chosen, protocol) if chosen else []
        finals[entry.label] = [] if grid and chosen is None else plan.final_cells(entry, chosen.tuned if chosen else ())
        if finished_only:
            finals[entry.label] = [c for c in finals[entry.label] if c.key in rows]
    return tuning, finals
