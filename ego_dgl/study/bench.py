"""The benchmark: where a training epoch's time goes, full-evaluation time and peak memory.

Each case runs in a fresh Python process so that its peak RSS is its own. An epoch is
timed phase by phase with the trainer's own pieces (negative sampling, forward, backward,
optimizer); on large graphs a case may time its first `batches` batches and project the
epoch from their mean, which the record says. Figures are medians over `repeats`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ego_dgl.errors import EgoDGLError
from ego_dgl.runs import pyplot, save_png
from ego_dgl.untrusted import Field, check_record, read_json

PHASES = ("t_sample", "t_forward", "t_backward", "t_optim")


@dataclass(frozen=True)
class Case:
    """One benchmark cell: a model (EgoGCN in `mode`, or a baseline with its defaults)
    trained on a dataset with the dataset's training profile."""

    dataset: str
    backend: str
    mode: str
    batches: int | None = None  # time this many batches and project the epoch; None = all
    model: str = "egogcn"
    sampler: str = "full"  # or neighbor: EgoGCN over DGL blocks sampled around each batch
    fanouts: str | None = None  # --fanouts of the neighbor sampler (None: its default)
    compile: str = "off"  # --compile: the training step under torch.compile in this mode

    @property
    def name(self) -> str:
        if self.model != "egogcn":
            return f"{self.dataset}/{self.model}"
        sampled = "" if self.sampler == "full" else f"/{self.sampler}-{self.fanouts or 'default'}"
        compiled = "" if self.compile == "off" else f"/compile-{self.compile}"
        return f"{self.dataset}/{self.backend}/{self.mode}{sampled}{compiled}"

    def options(self, device: str) -> dict[str, Any]:
        """The training options the case resolves (`train.resolve_options`)."""
        given = {"dataset": self.dataset, "model": self.model, "device": device}
        if self.model != "egogcn":
            return given
        sampling = {"sampler": self.sampler} | ({"fanouts": self.fanouts} if self.fanouts else {})
        return {**given, "mode": self.mode, "backend": self.backend, "compile": self.compile, **sampling}


def _grid(dataset: str, batches: int | None) -> list[Case]:
    return [Case(dataset, b, m, batches) for m in ("hard", "soft") for b in ("dgl", "torch", "fused")]


# Every trained baseline with its defaults, beside EgoGCN-hard, for the per-epoch ratios.
BASELINES = ("bpr", "lightgcn", "ngcf", "graphsage", "gat", "disengcn", "mmgcn", "grcn", "huign")
FIELD_MODELS = ("vbpr", "lattice", "freedom", "bm3", "mgcn", "lgmrec")  # the field's current models (MMRec's set), with their defaults

SUITES: dict[str, list[Case]] = {
    "ml100k": _grid("ml100k", None) + [Case("ml100k", "dgl-udf", "hard")],
    "models": [Case("ml100k", "auto", "hard")] + [Case("ml100k", "auto", "", model=m) for m in BASELINES + FIELD_MODELS],
    "synthetic-tiktok": _grid("synthetic-tiktok", 12),
    # full-graph against neighbour-sampled training as the graph grows (1x-64x ml100k's edges)
    "scaling": [Case(f"synthetic-x{s}", "auto", "hard", 3, sampler=sampler, fanouts=fanouts)
                for s in (1, 2, 4, 8, 16, 32, 64) for sampler, fanouts in (("full", None), ("neighbor", "10"))],
    # where the fused backend stops being faster than dgl as the node tables grow
    # (synthetic-x1 to x32: item tables of 1.3 to 41 MB; `auto`'s size rule comes from it)
    "crossover": [Case(f"synthetic-x{s}", b, "hard", 4) for s in (1, 4, 8, 16, 32) for b in ("dgl", "fused")],
    # the accuracy study's cells (results/sampling): full-graph against neighbour-sampled epochs
    # (synthetic-tiktok's projected from 12 steps)
    "sampling": [Case(d, "auto", "hard", n, sampler=s, fanouts=f) for d, n in (("ml100k", None), ("synthetic-tiktok", 12))
                 for s, f in (("full", None), ("neighbor", "10"), ("neighbor", "5"))],
    # the eager training step against torch.compile's (CUDA graphs under reduce-overhead on CUDA)
    "compile": [Case("ml100k", b, "hard", compile=c) for b in ("torch", "dgl") for c in ("off", "default", "reduce-overhead")],
    "synthetic-tiny": _grid("synthetic-tiny", None),
    # LATTICE's and FREEDOM's kNN item graphs at 76,085 items (build_s, peak memory) and
    # their first training steps there (three steps timed, the first of them carrying
    # LATTICE's per-epoch graph rebuild, the epoch projected)
    "knn": [Case("synthetic-tiktok", "auto", "", 3, model=m) for m in ("freedom", "lattice")],
}


def project(batches: list[dict[str, float]], total: int, sampling: float) -> dict[str, float]:
    """Whole-epoch phase seconds from the phase seconds of the epoch's first timed batches
    (of `total`): the first batch as timed, since a model may do its per-epoch work there
    (LATTICE rebuilds its learned item graph), and every other batch at the mean of the
    other timed ones (of the first, when only one was timed); the epoch's sampling (done
    once, for all batches) added as is."""
    first, rest = batches[0], batches[1:] or batches[:1]
    keys = {k for b in batches for k in b}
    phases = {k: first.get(k, 0.0) + (total - 1) * sum(b.get(k, 0.0) for b in rest) / len(rest) for k in keys}
    phases["t_sample"] = phases.get("t_sample", 0.0) + sampling
    return phases


def measure(case: Case, repeats: int, device: str = "cpu") -> dict[str, Any]:
    """Time `case` in this process: per-epoch phase seconds, evaluation seconds, peak memory."""
    from ego_dgl.data import load_dataset
    from ego_dgl.train.defaults import resolve_options
    from ego_dgl.train.trainer import PhaseClock, Trainer, evaluate_model, sample_epoch, train_step

    ds = load_dataset(case.dataset, progress=False)
    _, model_cfg, train_cfg, profile = resolve_options(case.options(device))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:  # the Trainer writes there only after an epoch, which the bench never runs
        trainer = Trainer(ds, model_cfg, train_cfg, Path(run_dir))  # builds the model, with LATTICE's and FREEDOM's kNN item graphs
    build_seconds = time.perf_counter() - start
    build_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the peak up to here: data and model
    model, optimizer, sampler, rng, blocks, step = trainer.model, trainer.optimizer, trainer.sampler, trainer.rng, trainer.blocks, trainer.batch_loss
    torch_device = trainer.device
    per_epoch = sampler.num_batches(train_cfg.batch_size)
    warmup = sample_epoch(sampler, rng, train_cfg.batch_size)
    for batch in (warmup[0], warmup[-1]):  # under --compile: both batch shapes compiled before timing
        train_step(model, optimizer, batch, train_cfg.reg, PhaseClock(torch_device), blocks, step)

    epochs = []
    for epoch in range(1, repeats + 1):
        clock = PhaseClock(torch_device)
        model.start_epoch(epoch, rng)  # as the trainer: a model's per-epoch graph work counts as sampling
        batches = sample_epoch(sampler, rng, train_cfg.batch_size)
        clock.lap("t_sample")
        timed = batches[: case.batches] if case.batches else batches
        sampling = clock.seconds.pop("t_sample")
        per_batch = []
        for batch in timed:
            batch_clock = PhaseClock(torch_device)
            train_step(model, optimizer, batch, train_cfg.reg, batch_clock, blocks, step)
            per_batch.append(batch_clock.seconds)
        epochs.append(project(per_batch, len(batches), sampling))

    evals = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate_model(model, ds, ("valid",), train_cfg)
        if torch_device.type == "cuda":
            torch.cuda.synchronize()
        evals.append(time.perf_counter() - start)

    phase = {k: statistics.median(e[k] for e in epochs) for k in PHASES}
    epoch_seconds = statistics.median(sum(e[k] for k in PHASES) for e in epochs)
    return {
        "case": asdict(case),
        "profile": profile,
        "model": case.model,
        "layers_mm": getattr(model_cfg, "layers_mm", None),
        "layers_id": getattr(model_cfg, "layers_id", None),
        "layers": getattr(model_cfg, "layers", None),
        "batch_size": train_cfg.batch_size,
        "train_edges": len(sampler.pairs),
        "data": ds.fingerprint(),  # which version of a generated dataset was timed
        "batches_per_epoch": per_epoch,
        "batches_timed": case.batches or per_epoch,
        "projected": bool(case.batches and case.batches < per_epoch),
        "repeats": repeats,
        "build_s": build_seconds,
        "build_peak_rss_mb": build_peak_mb,
        **phase,
        "shares": {k: phase[k] / epoch_seconds for k in PHASES},  # each phase's part of the epoch
        "epoch_s": epoch_seconds,
        "batches_per_s": per_epoch / epoch_seconds,
        "eval_s": statistics.median(evals),
        "eval_users": int((np.bincount(ds.valid[:, 0], minlength=ds.num_users) > 0).sum()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if torch_device.type == "cuda" else None,
        "backend": getattr(model, "backend", "torch"),
    }


def cpu_info() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none). VMs name
    their CPUs vaguely ("AMD EPYC"): family, model and stepping tell generations apart."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines()) if k.strip()}


def machine(threads: int, device: str) -> dict[str, Any]:
    """What the figures were measured on."""
    from ego_dgl._dgl import dgl

    info = cpu_info()
    return {
        "cpu": info.get("model name", platform.processor()),
        "cpu_id": {k: info[k] for k in ("cpu family", "model", "stepping", "cache size") if k in info},
        "hypervisor": "hypervisor" in info.get("flags", "").split(),
        "cores": os.cpu_count(),
        "threads": threads,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dgl": dgl.__version__,
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def run_case(case: Case, repeats: int, threads: int, device: str) -> dict[str, Any]:
    """`measure` in a child process limited to `threads` threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    args = [sys.executable, "-m", "ego_dgl.study.bench", json.dumps(asdict(case)), str(repeats), device]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        hint = " (the kernel's out-of-memory killer sends it)" if name == "SIGKILL" else ""
        raise EgoDGLError(f"benchmark case {case.name} was killed by {name}{hint}")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EgoDGLError(f"benchmark case {case.name} failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratios(results: list[dict[str, Any]], previous: dict[str, Any] | None) -> dict[str, float]:
    """Within this run: the torch/dgl (and torch/dgl-udf, torch/fused) epoch-time ratio per
    dataset and mode (above 1 = the DGL backend faster), dgl over fused of the epoch time
    and of the peak memory (above 1 = fused faster, smaller), each baseline's epoch time over EgoGCN-hard's,
    full-graph over neighbour-sampled epoch time (the sampler's speed-up) and the eager
    over the compiled step's (--compile's speed-up); against the
    previous record of the suite: old/new epoch time per case."""
    by_name = {Case(**r["case"]).name: r for r in results}
    full = {(c.dataset, c.mode): r for r in results if (c := Case(**r["case"])).model == "egogcn" and c.sampler == "full"}
    out = {}
    for r in results:
        case = Case(**r["case"])
        if case.model != "egogcn":
            if (case.dataset, "hard") in full:
                out[f"{case.model}_over_egogcn-hard/{case.dataset}"] = r["epoch_s"] / full[(case.dataset, "hard")]["epoch_s"]
            continue
        if case.compile != "off":
            if eager := by_name.get(replace(case, compile="off").name):
                out[f"eager_over_compile-{case.compile}/{case.dataset}/{case.backend}/{case.mode}"] = eager["epoch_s"] / r["epoch_s"]
            continue
        if case.sampler != "full":
            if whole := by_name.get(replace(case, sampler="full", fanouts=None).name):
                out[f"full_over_{case.sampler}-{case.fanouts or 'default'}/{case.dataset}/{case.mode}"] = whole["epoch_s"] / r["epoch_s"]
            continue
        other = by_name.get(f"{case.dataset}/torch/{case.mode}")
        if case.backend != "torch" and other:
            out[f"torch_over_{case.backend}/{case.dataset}/{case.mode}"] = other["epoch_s"] / r["epoch_s"]
        dgl = by_name.get(f"{case.dataset}/dgl/{case.mode}")
        if case.backend == "fused" and dgl:
            out[f"dgl_over_fused/{case.dataset}/{case.mode}"] = dgl["epoch_s"] / r["epoch_s"]
            out[f"peak_dgl_over_fused/{case.dataset}/{case.mode}"] = dgl["peak_rss_mb"] / r["peak_rss_mb"]
    for old in (previous or {}).get("results", []):
        name = Case(**old["case"]).name
        if name in by_name:
            out[f"previous_over_now/{name}"] = old["epoch_s"] / by_name[name]["epoch_s"]
    return out


CASE_FIELDS = {"dataset": Field(str), "backend": Field(str), "mode": Field(str), "batches": Field((int, type(None)), False, 1),
               "model": Field(str, False), "sampler": Field(str, False), "fanouts": Field((str, type(None)), False),
               "compile": Field(str, False)}


def read_previous(path: Path) -> dict[str, Any]:
    """The suite's earlier record, which this run compares with, checked before any case
    runs: every result names a case and a positive finite epoch time."""
    hint = "move the file away (this run writes a new one) or restore it"
    record = check_record(read_json(path, EgoDGLError, hint), {"results": Field(list)}, str(path), EgoDGLError, hint,
                          extra_ok=True)
    for k, result in enumerate(record["results"]):
        where = f"{path} field 'results', element {k}"
        check_record(result, {"case": Field(dict), "epoch_s": Field(float, low=1e-12)}, where, EgoDGLError, hint, extra_ok=True)
        check_record(result["case"], CASE_FIELDS, f"{where} field 'case'", EgoDGLError, hint)
    return record


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The suite's JSON, written atomically."""
    from ego_dgl.runs import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(report, indent=2) + "\n").encode())


def step_seconds(result: dict[str, Any]) -> float:
    """Seconds of one training step (a full-graph pass, forward and backward, and Adam)."""
    return result["epoch_s"] / result["batches_per_epoch"]


def plot_scaling(results: list[dict[str, Any]], path: Path) -> None:
    """Seconds per training step and peak memory against training edges, one line per
    sampler: full-graph EgoGCN propagates the whole graph every step, so its step costs
    linearly in the edges (an epoch, edges / batch steps, quadratically); a sampled step
    costs what its blocks hold."""
    with pyplot() as plt:
        fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 3.8))
        for sampler in dict.fromkeys(Case(**r["case"]).sampler for r in results):
            rows = sorted((r for r in results if Case(**r["case"]).sampler == sampler), key=lambda r: r["train_edges"])
            case = Case(**rows[0]["case"])
            label = "full graph" if sampler == "full" else f"{sampler} sampling, fanouts {case.fanouts or 'default'}"
            edges = [r["train_edges"] for r in rows]
            (line,) = ax_time.plot(edges, [step_seconds(r) for r in rows], "o-", label=f"step, {label}")
            ax_mem.plot(edges, [r["peak_rss_mb"] / 1024 for r in rows], "o-", color=line.get_color(), label=label)
            if sampler == "full":  # evaluation is the same exact pass whatever the training sampler
                ax_time.plot(edges, [r["eval_s"] for r in rows], "s:", label="full evaluation")
        ax_time.set_yscale("log")
        for ax, ylabel in ((ax_time, "seconds"), (ax_mem, "peak RSS of the process, GiB")):
            ax.set_xscale("log")
            ax.set_xlabel("training edges")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
        fig.suptitle("cost against graph size (EgoGCN-hard)")
        save_png(fig, path)


def report_path(out: Path, suite: str, device: str) -> Path:
    """<out>/<suite>.json on the CPU, <out>/<suite>-<device>.json elsewhere (e.g. -cuda),
    so a GPU run never overwrites the CPU record."""
    name = suite if device == "cpu" else f"{suite}-{device.replace(':', '')}"
    return Path(out) / f"{name}.json"


def runnable(case: Case, device: str) -> str | None:
    """None if `case` can run on `device`, else why not (a DGL backend where the
    installed DGL cannot run, e.g. the CPU-only PyPI DGL on CUDA)."""
    from ego_dgl.graph.backends import resolve_backend

    try:
        resolve_backend(case.backend, device)
    except EgoDGLError as err:
        return str(err)
    return None


def run_suite(
    suite: str, repeats: int = 3, threads: int = 2, device: str = "cpu", out: Path = Path("results/bench"),
    batches: int | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Run every case of `suite` that can run on `device`, write `report_path` (and
    scaling.png for the scaling suite), and return the report; cases whose backend cannot
    run there are listed under "skipped". `batches` overrides the cases' batch counts."""
    from rich.progress import Progress

    from ego_dgl.data import load_dataset

    if repeats < 1 or threads < 1 or (batches is not None and batches < 1):
        raise EgoDGLError("--repeats, --threads and --batches must be positive integers")
    if suite not in SUITES:
        raise EgoDGLError(f"unknown benchmark suite {suite!r}; use one of {', '.join(SUITES)}")
    cases = [replace(c, batches=batches or c.batches) for c in SUITES[suite]]
    skipped = {c.name: why for c in cases if (why := runnable(c, device)) is not None}
    cases = [c for c in cases if c.name not in skipped]
    for dataset in dict.fromkeys(c.dataset for c in cases):
        load_dataset(dataset, progress=progress)  # prepare once, before the timed children
    path = report_path(out, suite, device)
    previous = read_previous(path) if path.exists() else None
    results, failed = [], {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"bench {suite}", total=len(cases))
        for case in cases:
            bar.update(task, description=f"bench {case.name}")
            try:
                results.append(run_case(case, repeats, threads, device))
            except EgoDGLError as err:  # e.g. out of memory: a result of its own, the other cases still run
                failed[case.name] = str(err)
            bar.advance(task)
    if not results:
        raise EgoDGLError(f"every case of suite {suite} failed; the first: {next(iter(failed.values()))}")
    report = {"suite": suite, "machine": machine(threads, device), "results": results, "ratios": ratios(results, previous),
              "skipped": skipped, "failed": failed}
    write_report(path, report)
    if suite == "scaling":
        plot_scaling(results, path.with_suffix(".png"))
    return report


def model_shapes(results: list[dict[str, Any]]) -> str:
    """K, L and batch size of each dataset's first case (its EgoGCN), e.g. for a suite
    that times ml100k and synthetic-tiktok under their own training profiles."""
    shapes: dict[str, str] = {}
    for r in results:
        shapes.setdefault(r["case"]["dataset"], f"K={r['layers_mm']} L={r['layers_id']}, batch {r['batch_size']}")
    if len(shapes) == 1:
        return next(iter(shapes.values()))
    return "; ".join(f"{name} {shape}" for name, shape in shapes.items())


def report_table(report: dict[str, Any]):
    """A rich table of a suite's report."""
    from rich.markup import escape
    from rich.table import Table

    m = report["machine"]
    cpu_id = m.get("cpu_id") or {}
    cpu = m["cpu"] + (f" (family {cpu_id['cpu family']} model {cpu_id['model']})" if "model" in cpu_id else "")
    table = Table(
        title=escape(f"bench {report['suite']}: EgoGCN {model_shapes(report['results'])}; "
        f"{cpu}, {m['threads']} threads, {m['device_name']}, torch {m['torch']}, dgl {m['dgl']}")
    )
    table.add_column("case", no_wrap=True)
    for col in ("edges", "sample", "fwd", "bwd", "optim", "epoch s", "step s", "eval s", "peak MB"):
        table.add_column(col, justify="right")
    for r in report["results"]:
        peak = r["peak_cuda_mb"] if r["peak_cuda_mb"] is not None else r["peak_rss_mb"]
        epoch = f"{r['epoch_s']:.2f}" + ("*" if r["projected"] else "")
        table.add_row(
            Case(**r["case"]).name, f"{r['train_edges']:,}", *(f"{r[k]:.2f}" for k in PHASES), epoch, f"{step_seconds(r):.3f}",
                f"{r['eval_s']:.2f}", f"{peak:,.0f}"
        )
    if any(r["projected"] for r in report["results"]):
        table.caption = "* projected from the first batches of the epoch (see batches_timed in the JSON)"
    return table


if __name__ == "__main__":
    case_arg, repeats_arg, device_arg = sys.argv[1:4]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(json.dumps(measure(Case(**json.loads(case_arg)), int(repeats_arg), device_arg)))
