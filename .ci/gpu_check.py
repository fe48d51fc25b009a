"""Steps 1 and 4 of .ci/gpu-check (see its usage): device against CPU, and a Tiktok-sized
evaluation that never holds an all-users x all-items matrix. Prints one line per step,
"ok step N: ..." or "FAIL step N: ...", and exits 1 on a failure.

    python .ci/gpu_check.py agree --device cuda
    python .ci/gpu_check.py evaluate --device cuda [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ego_dgl.data import Dataset
from ego_dgl.data.synthetic import make_synthetic
from ego_dgl.errors import EgoDGLError
from ego_dgl.graph.backends import BACKENDS, resolve_backend
from ego_dgl.model.registry import MODELS, build_model, config_type

TOL = dict(rtol=0, atol=1e-6)
# Set only by tests/test_gpu_check.py: shifts the device side's tables so step 1 must fail.
PERTURB = "EGODGL_GPU_CHECK_PERTURB"
EGOGCN_VARIANTS = [
    dict(mode="hard", eps=0.1), dict(mode="soft", gate="scalar"), dict(mode="soft", gate="vector"), dict(fusion="gm"),
    dict(fusion="na"), dict(branches="id"), dict(branches="mm", mode="hard", eps=0.1), dict(mode="hard", eps=0.1, id_weights="soft-pruning"),
]


def small_graph(seed: int = 0) -> Dataset:
    """About 3,000 training edges, three modalities: the graph every model is compared on."""
    return make_synthetic(150, 200, 3750, {"visual": 9, "acoustic": 4, "textual": 6}, seed=seed, name="gpu-check")


def configs() -> list[tuple[str, Any]]:
    """(label, config) of every registered model; EgoGCN in every mode, fusion and branch
    set, once per backend that can run on the device under test (filled in by `agree`)."""
    out = []
    for name in MODELS:
        cfg = config_type(name)()
        if name == "egogcn":
            out += [(f"egogcn {kw}", replace(cfg, dim=16, layers_mm=3, layers_id=2, **kw)) for kw in EGOGCN_VARIANTS]
        else:
            out.append((name, replace(cfg, dim=16) if hasattr(cfg, "dim") else cfg))
    return out


def forward_and_gradients(
    ds: Dataset, cfg: Any, device: torch.device, state: dict | None, perturb: bool = False
) -> tuple[dict[str, torch.Tensor], dict]:
    """Tables, loss and parameter gradients of a float64 model on `device` (parameters
    from `state` when given), all moved to the CPU; and the model's state. `perturb`
    shifts the user table (tests only: the check must catch it)."""
    torch.manual_seed(0)
    model = build_model(ds, cfg, "cpu").double()
    if state is not None:
        model.load_state_dict(state)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.to(device)
    tables = model.propagate()
    out = {"users": tables.users, "items": tables.items}
    if perturb:
        out["users"] = out["users"] + 1e-3
    if model.trainable:
        rows = np.arange(0, len(ds.train), 23)[:64]
        users, pos = (torch.as_tensor(ds.train[rows, c], device=device) for c in (0, 1))
        neg = torch.as_tensor(ds.train[rows[::-1].copy(), 1], device=device)
        loss, _ = model.loss(users, pos, neg, reg=1e-3)
        loss.backward()
        out["loss"] = loss.detach()
        out.update({f"grad {n}": q.grad for n, q in model.named_parameters() if q.grad is not None})  # unused in this loss: none
    return {k: v.detach().cpu() for k, v in out.items()}, state


def backends_on(device: torch.device) -> list[str]:
    """The graph backends that can run on `device`."""
    ok = []
    for backend in BACKENDS:
        try:
            resolve_backend(backend, device)
        except EgoDGLError:
            continue
        ok.append(backend)
    return ok


def agree(device: torch.device) -> str:
    """Step 1: every model, mode and backend on `device` against the torch backend on the
    CPU, forward, loss and gradients, float64, 1e-6; returns the summary or raises."""
    ds = small_graph()
    backends = backends_on(device)
    checked = 0
    for label, cfg in configs():
        runs = [(b, replace(cfg, backend=b)) for b in backends] if hasattr(cfg, "backend") else [("-", cfg)]
        want, state = forward_and_gradients(ds, replace(cfg, backend="torch") if hasattr(cfg, "backend") else cfg, torch.device("cpu"), None)
        for backend, run_cfg in runs:
            got, _ = forward_and_gradients(ds, run_cfg, device, state, perturb=bool(os.environ.get(PERTURB)))
            for key in want:
                try:
                    torch.testing.assert_close(got[key], want[key], **TOL)
                except AssertionError as err:
                    first = str(err).strip().splitlines()[0]
                    raise AssertionError(f"{label} backend {backend} on {device}, {key}: {first}") from None
            checked += 1
    return (f"{checked} model/mode/backend runs on {device} equal the CPU's (forward, loss, gradients; float64, 1e-6; {len(ds.train)} edges; "
            f"backends {', '.join(backends)})")


def evaluation_dataset(quick: bool) -> Dataset:
    """synthetic-tiktok (36,656 users x 76,085 items), or a small synthetic one (--quick)."""
    from ego_dgl.data import load_dataset

    if quick:
        return make_synthetic(3000, 5000, 30000, {"visual": 16, "acoustic": 8, "textual": 12}, name="gpu-check-eval")
    return load_dataset("synthetic-tiktok", progress=False)


def evaluate_in_chunks(device: torch.device, quick: bool) -> str:
    """Step 4: a full-ranking evaluation of an EgoGCN on `device` through the project's
    evaluator, recording the largest block of users it scores at once; that block (and on
    CUDA the peak memory the evaluation added) must stay below all users x all items.
    With --quick the evaluator's memory budget shrinks with the dataset, so its chunking
    is exercised as on the full size."""
    import ego_dgl.evaluate as evaluator
    from ego_dgl.model.egogcn.config import ModelConfig
    from ego_dgl.train.defaults import resolve_options
    from ego_dgl.train.trainer import evaluate_model

    ds = evaluation_dataset(quick)
    if quick:
        tiktok = 36_656 * 76_085
        evaluator._MAX_CHUNK_BYTES = max(1, evaluator._MAX_CHUNK_BYTES * ds.num_users * ds.num_items // tiktok)
    _, _, train_cfg, _ = resolve_options({"dataset": "synthetic-tiktok"})
    model = build_model(ds, ModelConfig(mode="hard", eps=0.6, layers_mm=2, layers_id=2, backend="auto"), device)
    rows = []
    score = evaluator.top_items

    def counted(user_table, item_table, users, *args, **kwargs):
        rows.append(len(users))
        return score(user_table, item_table, users, *args, **kwargs)

    evaluator.top_items = counted
    with torch.no_grad():
        model.final_tables()  # the tables alone, so the peak below is the evaluation's
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    metrics = evaluate_model(model, ds, ("test",), train_cfg)["test"]
    full = ds.num_users * ds.num_items
    if not rows or max(rows) * ds.num_items >= full:
        raise AssertionError(f"the evaluator scored {max(rows or [0]):,} users at once: an all-users x all-items matrix ({ds.num_users:,} x "
            f"{ds.num_items:,})")
    peak = ""
    if device.type == "cuda":
        extra = torch.cuda.max_memory_allocated(device) - base
        if extra >= full * 4:
            raise AssertionError(f"evaluation added {extra / 2**30:.1f} GiB on {device}, no less than a float32 {ds.num_users:,} x "
                f"{ds.num_items:,} matrix")
        peak = f", peak {extra / 2**30:.2f} GiB added"
    return (
        f"{ds.name} evaluation on {device}: {int(metrics['users']):,} users x {ds.num_items:,} items in {len(rows)} chunks "
        f"of at most {max(rows):,} users{peak}; recall@10 {metrics['recall@10']:.4f}"
    )


STEPS = {"agree": (1, agree), "evaluate": (4, evaluate_in_chunks)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    number, run = STEPS[args.step]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        device = torch.device(args.device)
        summary = run(device) if args.step == "agree" else run(device, args.quick)
    except Exception as err:  # any failure is the step's: say it in one line
        print(f"FAIL step {number}: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}", flush=True)
        return 1
    print(f"ok step {number}: {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
