"""`egodgl tune`: a hyper-parameter search of one model on Optuna, so every baseline can
be given the same care (the same trial budget) as the model it is compared with.

- Sampling: Optuna's TPE, seeded with --seed (the runs' seed too), so a study is
  repeatable trial by trial in one worker. A rerun's sampler, and each --jobs worker's,
  is seeded from --seed, the trials the study holds and the worker's number: the
  sampler's state is not stored, and the same seed again would draw the values of the
  study's first trials again.
- Pruning: Optuna's median pruner on the protocol's validation selection metric
  (recall@10; recall@20 under --protocol mmrec) reported after every epoch
  (through the trainer's `on_epoch` hook): a trial below the median of the earlier
  trials at the same epoch stops and is recorded as pruned. It waits for --startup-trials
  finished trials and --warmup epochs of each trial (early epochs are noise).
- Selection: a trial's value is its best validation selection metric, never a test figure
  (the legacy protocol picks epochs by test recall, so it is refused).
- The space: the model's `search_space()` (lr and reg for all, plus its own knobs), less
  the options given on the command line (they are fixed); `--space FILE` (TOML/YAML, read
  like a config file) replaces it: option -> {low, high[, log]} or {choices}. Sampled
  floats are rounded to 3 significant digits before training, so the config written
  for the best trial and the names compare prints hold the value that trained.

The study lives in OUT/tune/<name>/: study.json (what is fixed: model, options, space),
study.db (Optuna's SQLite storage: Ctrl-C and a rerun continue it, a larger --trials adds
trials, --jobs workers share it), trials/trial-NNNN/ (each trial an ordinary run folder),
trials.csv, trials.json (every trial as Optuna holds it, rewritten after each trial: the
committed, text form of the study, from which a folder without study.db, such as a fresh
clone's, is rebuilt), best.toml (the best trial's options: `egodgl train --config best.toml` trains
the same run, `compare --params-from FOLDER` takes it), history.png and importance.png
(Optuna's matplotlib plots). A trial that Ctrl-C stopped is tried again on the rerun with
the same values, continuing its run folder from its last checkpoint (so is a trial whose
process was killed, found still marked running when the folder's lock is free again).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ego_dgl.errors import ConfigError, EgoDGLError
from ego_dgl.evaluate import select_metric
from ego_dgl.model.registry import MODELS, resolve_model
from ego_dgl.runs import (
    HISTORY,
    LAST,
    RECORD_HINT,
    ensure_folder,
    pyplot,
    read_csv,
    read_json,
    run_lock,
    save_png,
    slug,
    write_atomic,
    write_csv,
    write_json,
)
from ego_dgl.study.cells import start_parent_watch, study_folder, worker_threads
from ego_dgl.train.config_file import load_config_file, parse_file, yaml_text_number
from ego_dgl.train.defaults import (
    dataset_name,
    flag,
    option_types,
    resolve_options,
)
from ego_dgl.untrusted import Field, beyond_int64, check_record, type_ok

STUDY, STORAGE, BEST_CONFIG, TRIALS, EXPORT = "study.json", "study.db", "best.toml", "trials.csv", "trials.json"
STUDY_FIELDS = {"model": Field(str), "given": Field(dict), "space": Field(dict), "startup": Field(int, False), "warmup": Field(int, False)}
EXPORT_FIELDS = {
    "number": Field(int, low=0), "state": Field(str), "value": Field((float, type(None))), "params": Field(dict),
    "distributions": Field(dict), "intermediate": Field(dict), "user_attrs": Field(dict),
}
TRIAL_ATTRS = {
    "options": Field(dict, False), "best_epoch": Field(int, False), "pruned_at": Field(int, False), "retry_of": Field(int, False),
    "run": Field(str, False), "resume": Field(str, False), "error": Field(str, False),
}
EXPORT_HINT = "restore the file the study wrote, or give a new --name"
HISTORY_PNG, IMPORTANCE_PNG = "history.png", "importance.png"
NOT_SEARCHED = ("dataset", "out", "model", "seed", "device", "protocol", "epochs", "patience", "procs", "dist", "log")
RUN_ONLY = ("device", "log")  # options that change no figure: a rerun may change them, best.toml leaves them out
DEFAULT_STARTUP, DEFAULT_WARMUP = 5, 5


def optuna_module() -> Any:
    """optuna, or a one-line ConfigError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("egodgl tune needs Optuna: pip install 'ego-dgl[tune]' (or pip install optuna)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def round_value(value: float) -> float:
    """A sampled float to 3 significant digits (module docstring)."""
    return float(f"{value:.3g}")


def space_value_ok(value: Any, kind: type) -> bool:
    """Whether a space's bound or choice is a value of the option's type (an integer for a
    float, never true/false for a number), finite where it is a number and within torch's
    int64 where it is an integer."""
    if isinstance(value, float) and not math.isfinite(value) or beyond_int64(value):
        return False
    return type_ok(value, kind)


def check_range(key: str, spec: Any, kind: type, where: str) -> dict[str, Any]:
    """One entry of a search space, checked against the option's type: {choices: [...]}
    or {low, high[, log]} with finite low < high, log true or false (and low > 0 on a log scale)."""
    if not isinstance(spec, dict) or not ({"choices"} <= set(spec) or {"low", "high"} <= set(spec)):
        raise ConfigError(f"{where}: {key} must be a table with low and high (and optionally log = true) or with choices = [...]")
    extra = sorted(set(spec) - {"choices", "low", "high", "log"})
    if extra:
        raise ConfigError(f"{where}: {key} has an unknown field {extra[0]!r} (fields: low, high, log, choices)")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or not all(space_value_ok(c, kind) for c in choices):
            raise ConfigError(f"{where}: {key}.choices must be a non-empty list of {kind.__name__} values"
                              f"{' (finite)' if kind in (int, float) else ''}, got {choices!r:.60}")
        return {"choices": list(choices)}
    if kind not in (int, float):
        raise ConfigError(f"{where}: {key} is a {kind.__name__} option; give it choices = [...], not low and high")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if not all(space_value_ok(v, kind) for v in (low, high)):
        raise ConfigError(f"{where}: {key}.low and .high must be {kind.__name__} numbers, finite and within ±(2**63-1), "
                          f"got {low!r:.40} and {high!r:.40}{yaml_text_number(low) or yaml_text_number(high)}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: {key}.log must be true or false, got {log!r:.40}")
    if not low < high or (log and low <= 0):
        raise ConfigError(f"{where}: {key} needs low < high{' and low > 0 on a log scale' if log else ''}, got {low}..{high}")
    return {"low": low, "high": high, "log": log}


def check_space(space: dict[str, Any], model: str, given: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """A search space checked against the model's options: each key an option of the model
    or a training option that a trial may change, and not one the command line fixes."""
    _, model_cfg, train_cfg, _ = resolve_options({**given, "model": model})
    allowed = {*(k for k in option_types() if hasattr(model_cfg, k) or hasattr(train_cfg, k))} - set(NOT_SEARCHED)
    checked = {}
    for raw, spec in space.items():
        key = str(raw).replace("-", "_")
        if key not in allowed:
            raise ConfigError(f"{where}: {raw!r} is not an option --model {model} can search; options: {', '.join(sorted(allowed))}")
        if key in given:
            raise ConfigError(f"{where}: {raw} is searched, so it cannot also be fixed by {flag(key)}; drop one of them")
        checked[key] = check_range(raw, spec, option_types()[key], where)
    if not checked:
        raise ConfigError(f"{where}: nothing to search for --model {model}; give a --space file or fix fewer options")
    return checked


def search_space(model: str, given: dict[str, Any], space_file: str | None) -> dict[str, dict[str, Any]]:
    """The --space file's space, or the model's own less the options given."""
    if space_file:
        return check_space(parse_file(Path(space_file)), model, given, f"--space {space_file}")
    _, model_cfg, _, _ = resolve_options({**given, "model": model})
    own = {k: v for k, v in model_cfg.search_space().items() if k not in given}
    return check_space(own, model, given, f"the search space of --model {model}")


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One trial's values: categorical, integer or float (rounded) per the space."""
    types, values = option_types(), {}
    for key, spec in space.items():
        if "choices" in spec:
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif types[key] is int:
            values[key] = trial.suggest_int(key, spec["low"], spec["high"], log=spec["log"])
        else:
            values[key] = round_value(trial.suggest_float(key, spec["low"], spec["high"], log=spec["log"]))
    return values


@dataclass
class Plan:
    """What a study fixes (study.json): the model, the options given, the space."""

    folder: Path
    model: str
    given: dict[str, Any]
    space: dict[str, dict[str, Any]]
    startup: int = DEFAULT_STARTUP
    warmup: int = DEFAULT_WARMUP

    @property
    def metric(self) -> str:
        """What trials are pruned and chosen on: the protocol's selection metric, on validation."""
        return select_metric(self.given.get("protocol") or "full")

    @property
    def seed(self) -> int:
        """The runs' seed, which also seeds the sampler."""
        return int(self.given.get("seed", 0))

    def record(self) -> dict[str, Any]:
        """What a rerun must repeat: all but the options that do not change a run's figures."""
        given = {k: v for k, v in self.given.items() if k not in RUN_ONLY}
        return {"model": self.model, "given": given, "space": self.space, "startup": self.startup, "warmup": self.warmup}

    def storage(self) -> str:
        """Optuna's URL of the folder's SQLite file."""
        return f"sqlite:///{(self.folder / STORAGE).resolve()}"


def plan_tune(opts: dict[str, Any]) -> Plan:
    """The study of the command's options; a refused option is one ConfigError."""
    given = {k: v for k, v in opts.get("given", {}).items() if v is not None}
    model = str(opts.get("model") or "")
    if not model:
        raise ConfigError("--model is required: the model to tune (egodgl models lists them)")
    if given.get("protocol") == "legacy":
        raise ConfigError("tune selects on validation only; the legacy protocol picks epochs by test recall: drop --protocol legacy")
    resolve_options({**given, "model": model})  # the given options, checked first
    if not MODELS[resolve_model(model)[0]].model_type().trainable:
        raise ConfigError(f"--model {model} learns nothing, so there is nothing to tune")
    for name in ("trials", "jobs"):
        if int(opts.get(name, 1)) < 1:
            raise ConfigError(f"--{name} must be a positive integer, got {opts[name]}")
    if opts.get("timeout") is not None and not opts["timeout"] > 0:
        raise ConfigError(f"--timeout must be a positive number of minutes, got {opts['timeout']}")
    if int(opts.get("startup", DEFAULT_STARTUP)) < 0 or int(opts.get("warmup", DEFAULT_WARMUP)) < 0:
        raise ConfigError("--startup-trials and --warmup must be >= 0")
    folder = study_folder(opts.get("out"), "tune", opts.get("name"), f"{model}-{slug(dataset_name(given))}")
    space = search_space(model, given, opts.get("space"))
    return Plan(folder, model, given, space, int(opts.get("startup", DEFAULT_STARTUP)), int(opts.get("warmup", DEFAULT_WARMUP)))


def check_same_study(plan: Plan) -> None:
    """Write study.json for a new study; for an existing one, refuse other fixed options
    (only --trials, --timeout and --jobs may change on a rerun)."""
    path = plan.folder / STUDY
    record = json.loads(json.dumps(plan.record()))
    if not path.exists():
        write_json(path, record)
        return
    saved = read_study(plan.folder)
    before, now = saved["given"], record["given"]
    changes = [f"{flag(k)} {before.get(k, 'not given')} -> {now.get(k, 'not given')}" for k in sorted({*before, *now}) if before.get(k) != now.get(k)]
    changes += [f"{k} changed" for k in record if k != "given" and saved.get(k) != record[k]]
    if changes:
        raise ConfigError(
            f"the study in {plan.folder} was started with other options ({'; '.join(changes)}); rerun it with the same ones "
            "(only --trials, --timeout and --jobs may change) or give a new --name"
        )


def read_study(folder: Path) -> dict[str, Any]:
    """A study folder's study.json, checked field by field before use."""
    return check_record(read_json(folder / STUDY), STUDY_FIELDS, str(folder / STUDY), ConfigError, RECORD_HINT, extra_ok=True)


def open_study(plan: Plan) -> Any:
    """The study in the folder's SQLite storage (created on first use): TPE seeded with
    the plan's seed, the median pruner, maximising validation recall@10."""
    optuna = optuna_module()
    from sqlalchemy.exc import SQLAlchemyError

    ensure_folder(plan.folder)
    try:
        return optuna.create_study(
            study_name="tune", storage=plan.storage(), direction="maximize", load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=plan.seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=plan.startup, n_warmup_steps=plan.warmup),
        )
    except (SQLAlchemyError, optuna.exceptions.OptunaError, RuntimeError) as err:
        detail = " ".join(str(getattr(err, "orig", None) or err).split())[:200]
        raise ConfigError(f"{plan.folder / STORAGE}: not a study database this Optuna can read ({detail}); restore the file "
                          "the study wrote, or give a new --name") from None


def export_trials(study: Any) -> list[dict[str, Any]]:
    """Every trial but the waiting ones as trials.json holds them; a running trial is
    written as failed (on a fresh machine it is an interrupted one, tried again)."""
    from optuna.distributions import distribution_to_json

    return [{
        "number": t.number, "state": "FAIL" if t.state.name == "RUNNING" else t.state.name,
        "value": None if t.state.name in ("RUNNING", "FAIL") else t.value, "params": t.params,
        "distributions": {k: json.loads(distribution_to_json(d)) for k, d in t.distributions.items()},
        "intermediate": {str(step): value for step, value in sorted(t.intermediate_values.items())}, "user_attrs": t.user_attrs,
    } for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING"]


def frozen_trial(record: Any, index: int, where: str) -> Any:
    """One trials.json record as an Optuna trial, checked field by field (Optuna checks
    that the values lie in their distributions and that the state fits the value)."""
    optuna = optuna_module()
    from optuna.distributions import json_to_distribution

    at = f"{where}: trial {index}"
    record = check_record(record, EXPORT_FIELDS, at, ConfigError, EXPORT_HINT)
    if record["number"] != index:
        raise ConfigError(f"{at}: numbered {record['number']}, trials must be numbered 0, 1, 2, ... in order; {EXPORT_HINT}")
    states = ("COMPLETE", "PRUNED", "FAIL")
    if record["state"] not in states:
        raise ConfigError(f"{at}: state must be one of {', '.join(states)}, found {record['state']!r:.40}; {EXPORT_HINT}")
    attrs = check_record(record["user_attrs"], TRIAL_ATTRS, f"{at}: user_attrs", ConfigError, EXPORT_HINT)
    options = attrs.get("options", {} if record["state"] == "FAIL" else None)
    if not isinstance(options, dict) or not all(isinstance(v, (int, float, str)) for v in options.values()):
        raise ConfigError(f"{at}: user_attrs.options must be an object of the values that trained; {EXPORT_HINT}")
    extra = sorted(set(options) - set(record["params"]))
    if extra:
        raise ConfigError(f"{at}: user_attrs.options holds {extra[0]!r:.60}, which the trial did not search; {EXPORT_HINT}")
    try:
        return optuna.trial.create_trial(
            state=optuna.trial.TrialState[record["state"]], value=record["value"], params=record["params"],
            distributions={k: json_to_distribution(json.dumps(v)) for k, v in record["distributions"].items()},
            intermediate_values={int(step): float(v) for step, v in record["intermediate"].items()}, user_attrs=record["user_attrs"],
        )
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        detail = " ".join(str(err).split())[:160]
        raise ConfigError(f"{at}: not a trial Optuna can take ({detail}); {EXPORT_HINT}") from None


def exported_trials(folder: Path) -> list[Any]:
    """trials.json's trials, every one checked before any is used."""
    path = folder / EXPORT
    records = read_json(path)
    if not isinstance(records, list):
        raise ConfigError(f"{path}: must be a JSON list of trials; {EXPORT_HINT}")
    return [frozen_trial(record, index, str(path)) for index, record in enumerate(records)]


def open_or_rebuild(plan: Plan) -> Any:
    """The folder's study; where study.db is missing but trials.json is there (a study
    carried to another machine in git), a new storage holding trials.json's trials, so
    TPE and the pruner go on from what the earlier trials found."""
    rebuild = not (plan.folder / STORAGE).exists() and (plan.folder / EXPORT).exists()
    trials = exported_trials(plan.folder) if rebuild else []
    study = open_study(plan)
    if trials:
        study.add_trials(trials)
    return study


def retry_interrupted(study: Any) -> int:
    """Enqueue each interrupted trial (failed without a recorded error: Ctrl-C; or still
    marked running, which under the folder's lock means its process was killed) not yet
    retried, with its values and its run folder, so the rerun continues it; the number
    enqueued. A trial whose values the model refused or that diverged keeps its error and
    is not tried again."""
    optuna = optuna_module()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    failed = [t for t in trials if t.state.name == "FAIL" and "error" not in t.user_attrs and t.number not in retried and t.params]
    for t in failed:
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "resume": t.user_attrs.get("run", "")}, skip_if_exists=False)
    return len(failed)


def replay(trial: Any, run_dir: Path, metric: str) -> None:
    """Report the recorded epochs of a resumed run to the trial again (the pruner compares
    trials epoch by epoch)."""
    for row in read_csv(run_dir / HISTORY, required=("epoch", f"valid/{metric}"), numeric=("valid/",), integers=("epoch",)):
        trial.report(float(row[f"valid/{metric}"]), int(row["epoch"]))


def own_trial_folder(plan: Plan, folder: Path) -> bool:
    """Whether a folder a trial names to resume is one of this study's trial folders: the
    storage or trials.json may come from elsewhere, and a trial trains only in its study."""
    return folder.parent.resolve() == (plan.folder / "trials").resolve() and folder.name.startswith("trial-")


class Objective:
    """One trial: sample, train its run folder with pruning after every epoch, return the
    best validation recall@10."""

    def __init__(self, plan: Plan, ds: Any, display: str):
        self.plan, self.ds, self.display = plan, ds, display

    def __call__(self, trial: Any) -> float:
        from ego_dgl.train.records import dataset_source
        from ego_dgl.train.trainer import train

        optuna = optuna_module()
        values = suggest(trial, self.plan.space)
        trial.set_user_attr("options", values)
        try:
            dataset, model_cfg, train_cfg, _ = resolve_options({**self.plan.given, **values, "model": self.plan.model})
        except ConfigError as err:  # values the model refuses (e.g. a width the heads do not divide)
            trial.set_user_attr("error", str(err))
            raise
        resume = Path(trial.user_attrs["resume"]) if trial.user_attrs.get("resume") else None
        resume_ok = resume is not None and own_trial_folder(self.plan, resume) and (resume / LAST).exists()
        run_dir = resume if resume_ok else self.plan.folder / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run", str(run_dir))
        if resume_ok:
            replay(trial, run_dir, self.plan.metric)

        metric = self.plan.metric

        def on_epoch(record: dict[str, Any]) -> None:
            value = record[f"valid/{metric}"]
            trial.report(value, record["epoch"])
            if trial.should_prune():
                trial.set_user_attr("pruned_at", record["epoch"])
                raise optuna.TrialPruned(f"validation {metric} {value:.4f} below the median at epoch {record['epoch']}")

        try:
            with run_lock(ensure_folder(run_dir)):
                result = train(
                    self.ds, model_cfg, train_cfg, run_dir, resume=resume_ok, progress=self.display, source=dataset_source(dataset),
                    on_epoch=on_epoch, tag=f"{self.plan.folder.name} trial {trial.number}",
                )
        except EgoDGLError as err:  # e.g. a diverged loss at a large lr: the study goes on
            trial.set_user_attr("error", str(err))
            raise
        trial.set_user_attr("best_epoch", result.best_epoch)
        return float(result.valid[metric])


def finished(study: Any) -> int:
    """Trials that count against --trials: complete and pruned."""
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))


def sampler_seed(seed: int, held: int, worker: int) -> int:
    """The sampler's seed for a process that finds `held` trials in the study: --seed
    itself for a new study's first worker, else one drawn from the three (module docstring)."""
    import numpy as np

    return seed if (held, worker) == (0, 0) else int(np.random.SeedSequence([seed, held, worker]).generate_state(1)[0])


def optimise(
    plan: Plan, ds: Any, trials: int, timeout_min: float | None, display: str, share: int | None = None, worker: int = 0,
) -> None:
    """Run trials in this process until the study holds `trials` finished ones (counted
    across every worker), this process has run its `share` (a --jobs worker's part of the
    missing trials, so that workers finishing together do not overshoot) or the timeout
    passes."""
    optuna = optuna_module()
    study = open_study(plan)
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(plan.seed, len(study.get_trials(deepcopy=False)), worker))
    missing = trials - finished(study)
    if missing <= 0:
        return
    stop = optuna.study.MaxTrialsCallback(trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    study.optimize(
        Objective(plan, ds, display), n_trials=missing if share is None else share, timeout=None if timeout_min is None else timeout_min * 60,
        callbacks=[stop, lambda study, _: write_records(plan, study)], catch=(EgoDGLError,), gc_after_trial=False,
    )


def _worker(
    plan: Plan, dataset: str, threads: int, trials: int, timeout_min: float | None, share: int, worker: int, parent: int,
) -> None:
    """A --jobs worker process: a watchdog that ends it if the tune process (`parent`) is killed, its share of the
    CPU threads, the dataset, its share of the trials (a killed one is retried on the rerun)."""
    import torch

    from ego_dgl.data import load_dataset

    start_parent_watch(parent)
    torch.set_num_threads(threads)
    optimise(plan, load_dataset(dataset, progress=False), trials, timeout_min, "lines", share, worker)


def run_workers(plan: Plan, trials: int, timeout_min: float | None, jobs: int) -> None:
    """--jobs worker processes sharing the study's storage, each with its share of the
    missing trials, each stopping by itself should this process be killed; the first failure is raised."""
    context = multiprocessing.get_context("spawn")
    dataset = dataset_name(plan.given)
    missing = max(0, trials - finished(open_study(plan)))
    shares = [missing // jobs + (k < missing % jobs) for k in range(min(jobs, missing))]  # a worker past the missing trials has none
    args = (plan, dataset, worker_threads(jobs), trials, timeout_min)
    procs = [context.Process(target=_worker, args=(*args, n, k, os.getpid())) for k, n in enumerate(shares) if n]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.join()  # each worker got the same Ctrl-C: Optuna marks its trial failed
        raise
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        raise EgoDGLError(f"{len(bad)} of {len(procs)} tune workers failed (exit code {bad[0]}); see the messages above")


def trial_rows(plan: Plan, study: Any) -> list[dict[str, Any]]:
    """trials.csv: per trial its state, value, the values that trained, its best or pruned
    epoch, the trial it retries, its run folder and any error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        options, attrs = t.user_attrs.get("options", t.params), t.user_attrs
        rows.append({
            "trial": t.number, "state": t.state.name.lower(), f"valid/{plan.metric}": "" if t.value is None else t.value,
            **{k: options.get(k, "") for k in sorted(plan.space)},
            **{k: attrs.get(k, "") for k in ("best_epoch", "pruned_at", "retry_of", "run", "error")},
        })
    return rows


def toml_value(value: Any) -> str:
    """A TOML scalar: true/false, a number as Python writes it, a quoted string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def best_options(plan: Plan, study: Any) -> dict[str, Any] | None:
    """The options of the best complete trial: the study's fixed ones and its values of the
    options the study searches (a storage or trials.json from elsewhere may hold others,
    e.g. an `out` to send `train --config best.toml` elsewhere; they are not taken)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        return None
    best = max(complete, key=lambda t: (t.value, -t.number))
    fixed = {"dataset": dataset_name(plan.given), "seed": plan.seed, **{k: v for k, v in plan.given.items() if k not in RUN_ONLY}}
    values = best.user_attrs.get("options", best.params)
    return {"model": plan.model, **fixed, **{k: values[k] for k in plan.space if k in values}, "_trial": best.number, "_value": best.value}


def write_best(plan: Plan, best: dict[str, Any]) -> None:
    """best.toml: a config file `egodgl train --config` and `compare --params-from` take."""
    lines = [f"# egodgl tune: trial {best['_trial']} of {plan.folder.name}, validation {plan.metric} {best['_value']:.4f}"]
    lines += [f"{k.replace('_', '-')} = {toml_value(v)}" for k, v in best.items() if not k.startswith("_")]
    write_atomic(plan.folder / BEST_CONFIG, ("\n".join(lines) + "\n").encode())


def save_plots(plan: Plan, study: Any) -> list[str]:
    """history.png and importance.png (Optuna's matplotlib plots); a plot Optuna cannot
    draw yet (too few finished trials) is left out. The names written."""
    optuna = optuna_module()
    from optuna.visualization import matplotlib as plots

    written = []
    with warnings.catch_warnings(), pyplot():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # few trials: an empty legend, equal importances
        for name, draw in ((HISTORY_PNG, plots.plot_optimization_history), (IMPORTANCE_PNG, plots.plot_param_importances)):
            try:
                axes = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
            save_png(axes.figure, plan.folder / name)
            written.append(name)
    return written


@dataclass
class TuneResult:
    """What a tune command leaves: the folder, counts by state, the best options, plots."""

    folder: Path
    states: dict[str, int]
    best: dict[str, Any] | None
    plots: list[str]


def write_records(plan: Plan, study: Any) -> dict[str, Any] | None:
    """trials.csv, trials.json and best.toml of the study as it stands (after every
    trial, so a study stopped by a killed process is carried on from its last trial); the
    best options."""
    write_csv(plan.folder / TRIALS, trial_rows(plan, study))
    write_json(plan.folder / EXPORT, export_trials(study))
    best = best_options(plan, study)
    if best is not None:
        write_best(plan, best)
    return best


def summarise(plan: Plan, study: Any) -> TuneResult:
    """Write the study's records and plots as it stands."""
    best = write_records(plan, study)
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    return TuneResult(plan.folder, states, best, save_plots(plan, study))


def launch_tune(opts: dict[str, Any], progress: bool = True) -> TuneResult:
    """`egodgl tune`: plan, check a rerun's options, retry interrupted trials, run the
    trials (in --jobs workers), then summarise. Ctrl-C ends with the command to continue."""
    plan = plan_tune(opts)
    optuna_module()
    with run_lock(ensure_folder(plan.folder)):
        check_same_study(plan)
        study = open_or_rebuild(plan)
        retry_interrupted(study)
        trials, jobs, timeout = int(opts.get("trials") or 1), int(opts.get("jobs") or 1), opts.get("timeout")
        try:
            if jobs == 1:
                from ego_dgl.data import load_dataset

                ds = load_dataset(dataset_name(plan.given), progress=progress)
                optimise(plan, ds, trials, timeout, "auto" if progress else "off")
            else:
                run_workers(plan, trials, timeout, jobs)
        except KeyboardInterrupt:
            summarise(plan, study)
            raise EgoDGLError(f"interrupted; rerun the same egodgl tune command to continue the study in {plan.folder}") from None
        return summarise(plan, study)


def tuned_entry(folder: str | Path) -> str:
    """The compare name of a study's best trial: MODEL+KEY=VALUE... with its searched
    values (`compare --params-from FOLDER`)."""
    folder = Path(folder)
    path = folder / BEST_CONFIG
    if not (folder / STUDY).exists():
        raise ConfigError(f"--params-from {folder}: not a tune study folder (no {STUDY}); give OUT/tune/<name>")
    if not path.exists():
        raise ConfigError(f"--params-from {folder}: the study has no finished trial yet (no {BEST_CONFIG}); run egodgl tune on it first")
    searched = read_study(folder)["space"]
    best = load_config_file(path)
    missing = next((k for k in ("model", *sorted(searched)) if k not in best), None)
    if missing:
        raise ConfigError(f"--params-from {folder}: {BEST_CONFIG} has no {missing.replace('_', '-')!r}, which the study searched; "
                          "rerun egodgl tune on it to rewrite the file")
    from ego_dgl.study.compare import assignments

    return str(best["model"]) + assignments(tuple((k, best[k]) for k in sorted(searched)))
