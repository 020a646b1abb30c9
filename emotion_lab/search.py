"""Hyperparameter search with Optuna: `python -m emotion_lab.search hparams_search=<name>`.

    python -m emotion_lab.search hparams_search=minilm_lora search.n_trials=20
    python -m emotion_lab.search hparams_search=minilm_lora search.n_trials=10   # resumes
    python -m emotion_lab.search hparams_search=minilm_lora backbone=distilbert  # any override
    python -m emotion_lab.search hparams_search=minilm_lora search.workers=2     # 2 processes
    python -m emotion_lab.search hparams_search=minilm_lora \
        search.storage=postgresql://user:password@host/db   # one study for many machines

The search config (conf/hparams_search/) names the study, its storage (SQLite for one
machine, PostgreSQL for many), the metric (validation only: a test metric is refused), the
pruner and each parameter's distribution. Every trial composes the training config from
the command's overrides, the search's `fixed` overrides and the trial's values, runs
`train()` into <search.dir>/trial_<n>/, and reports val macro-F1 after every epoch to the
median pruner, which reads every worker's reports from the storage. `search.workers=N`
processes (and any number of other commands: SLURM jobs) pull trials from one study;
`search.n_trials` is what this command adds, all its workers together; `search.max_trials`
caps the study's total, all commands together. A stopped search
resumes where it was; a killed worker's trial turns FAIL once its heartbeat is stale; a
trial that raises is stored FAIL with its message (`search.on_error`). The best trial is
printed and written as <search.dir>/experiment/<study>_best.yaml, run with
`python -m emotion_lab.train 'hydra.searchpath=[file://<search.dir>]' experiment=<study>_best`.
The study machinery (storage, heartbeat, sampler, workers): emotion_lab/training/study.py;
the recipes: docs/scale.md.

(hydra-optuna-sweeper pins optuna below 3; this drives Optuna's current API instead.)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emotion_lab.cli import user_error
from emotion_lab.errors import EmotionLabError, SearchError
from emotion_lab.train import train
from emotion_lab.training.study import (
    Budget,
    open_study,
    run_workers,
    shown,
    trial_loop,
    trial_seeded_tpe,
    worker_threads,
)

log = logging.getLogger(__name__)
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
ON_ERROR = ("stop", "continue")
# errors that fail every trial alike (a setting, an override naming no config key): the
# search stops at the first, whatever search.on_error says
CONFIG_ERRORS = (EmotionLabError, HydraException, OmegaConfBaseException)


class ReportToTrial(L.Callback):
    """After each validation epoch: report the metric to the trial; stop it if the pruner
    says it is worse than the median of the study's trials at that epoch (every worker's:
    the pruner reads them from the shared storage)."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics[self.metric]), trainer.current_epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"{self.metric} below the median at epoch "
                                     f"{trainer.current_epoch}")


def suggest(trial: Any, name: str, spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    if kind == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec["choices"]))
    raise SearchError(f"search.params.{name}: type={kind!r}; use float, int or categorical")


def check(spec: dict[str, Any]) -> None:
    """Refuse a search config that cannot run, before any trial is stored."""
    def refuse(key: str, value: Any, hint: str) -> None:
        raise SearchError(f"search.{key}={value!r}: {hint}")

    def whole(value: Any, least: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    if not whole(spec.get("n_trials"), 1):
        refuse("n_trials", spec.get("n_trials"),
               "the number of trials this command adds (all its workers); an integer >= 1")
    if spec.get("max_trials") is not None and not whole(spec["max_trials"], 1):
        refuse("max_trials", spec["max_trials"], "the study's total, all commands together; "
               "an integer >= 1, or null: no cap")
    if not whole(spec.get("workers"), 1):
        refuse("workers", spec.get("workers"), "processes pulling trials; an integer >= 1")
    beat, grace = spec.get("heartbeat_interval"), spec.get("grace_period")
    if beat is not None and not whole(beat, 1):
        refuse("heartbeat_interval", beat, "seconds, an integer >= 1; or null: no heartbeat")
    if grace is not None and not (whole(grace, 1) and (beat is None or grace > beat)):
        refuse("grace_period", grace, "seconds, an integer above heartbeat_interval; or "
               "null: twice heartbeat_interval")
    if spec.get("direction") not in ("maximize", "minimize"):
        refuse("direction", spec.get("direction"), "use maximize or minimize")
    if spec.get("on_error") not in ON_ERROR:
        refuse("on_error", spec.get("on_error"), f"use {' or '.join(ON_ERROR)}")
    seed = spec.get("seed")
    if seed is not None and not whole(seed, 0):
        refuse("seed", seed, "an integer >= 0, or null for an unreproducible search")
    for name, p in (spec.get("params") or {}).items():
        if not isinstance(p, dict):
            refuse(f"params.{name}", p, "a distribution: {type: float|int|categorical, ...}")
        kind, low, high = p.get("type"), p.get("low"), p.get("high")
        if kind == "categorical" and not p.get("choices"):
            refuse(f"params.{name}.choices", p.get("choices"), "give at least one choice")
        elif kind in ("float", "int"):
            if not all(isinstance(v, int | float) and not isinstance(v, bool)
                       for v in (low, high)) or low >= high:
                refuse(f"params.{name}", {"low": low, "high": high},
                       "needs numbers low < high")
            if p.get("log") and low <= 0:
                refuse(f"params.{name}.low", low, "a log scale needs low > 0")
        elif kind != "categorical":
            refuse(f"params.{name}.type", kind, "use float, int or categorical")


def override(key: str, value: Any) -> str:
    """A Hydra override for a value Optuna suggested (null, true, numbers, strings)."""
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def best_experiment(study: Any, search: dict[str, Any], base: list[str], path: Path) -> Path:
    """The best trial as an experiment config: group choices as default overrides, values
    nested under their keys."""
    best = study.best_trial
    overrides = [*base, *search["fixed"], *(override(k, v) for k, v in best.params.items())]
    defaults, values = [], {}
    for item in overrides:
        key, value = item.lstrip("+~").split("=", 1)
        if "." not in key and (CONF_DIR / key).is_dir():
            defaults.append({f"override /{key}": value})
            continue
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    header = (f"# @package _global_\n# Best trial of Optuna study {study.study_name} "
              f"(trial {best.number}: {search['metric']} {best.value:.4f}), written by "
              f"python -m emotion_lab.search.\n# python -m emotion_lab.train "
              f"'hydra.searchpath=[file://{path.parent.parent.resolve()}]' "
              f"experiment={path.stem}\n")
    body = yaml.safe_dump({"defaults": defaults, **values}, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    # several commands on one study each write it as they end: never a half-written file
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(header + body, encoding="utf-8")
    partial.replace(path)
    return path


def run_trial(trial: Any, spec: dict[str, Any], base: list[str], extra: list[str]) -> float:
    """One trial: suggest its values, train into <dir>/trial_<n>/; the metric's value.
    `extra`: the worker's own overrides (its torch threads), kept out of the best config."""
    values = {name: suggest(trial, name, p) for name, p in spec["params"].items()}
    directory = Path(spec["dir"])
    run_dir = directory / f"trial_{trial.number}"
    overrides = [*base, *spec["fixed"], *(override(k, v) for k, v in values.items()), *extra,
                 f"paths.output_dir={run_dir}", f"paths.sweep_group={directory}"]
    log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in values.items()))
    metrics, _ = train(compose_train(overrides), callbacks=[ReportToTrial(trial, spec["metric"])])
    if spec["metric"] not in metrics:
        raise SearchError(f"search.metric={spec['metric']}: the run logged no such metric; "
                          f"one of {', '.join(sorted(metrics))}")
    return float(metrics[spec["metric"]])


def settings(overrides: list[str]) -> tuple[DictConfig, dict[str, Any], list[str]]:
    """The training config, the checked search settings, the overrides trials share."""
    cfg = compose_train(overrides)
    if cfg.get("search") is None:
        known = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))
        raise SearchError(f"no search configured: add hparams_search=<name> (one of "
                          f"{', '.join(known)})")
    spec = OmegaConf.to_container(cfg.search, resolve=True)
    for key, value in DEFAULTS.items():
        spec.setdefault(key, value)
    check(spec)
    if spec["metric"].startswith("test/"):
        raise SearchError(f"search.metric={spec['metric']}: a search must never choose on the "
                          f"test split; use a val/ metric (val/macro_f1).")
    # trials compose the training config: the search's own settings stay out, and each
    # trial gets its own output directory and the search's W&B group
    base = [o for o in overrides if not o.lstrip("+~").startswith(
        ("hparams_search=", "search.", "paths.output_dir=", "paths.sweep_group="))]
    return cfg, spec, base


DEFAULTS = {"on_error": "continue", "workers": 1, "max_trials": None, "heartbeat_interval": 30,
            "grace_period": 120}


def pruner(spec: dict[str, Any]) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(**spec["pruner"]) if spec.get("pruner") \
        else optuna.pruners.NopPruner()


def search(overrides: list[str]) -> dict[str, Any]:
    """Run (or resume) the study; returns {best_value, best_params, trials, experiment}."""
    import optuna

    cfg, spec, base = settings(overrides)
    Path(spec["dir"]).mkdir(parents=True, exist_ok=True)
    study = open_study(spec, trial_seeded_tpe(spec["seed"]), pruner(spec))
    workers = spec["workers"]
    log.info("study %s (%s): %d trial(s) stored; adding %d with %d worker(s)",
             spec["study_name"], shown(spec["storage"]), len(study.trials), spec["n_trials"],
             workers)
    # N workers side by side: each its share of the cores (threads=auto), as joblib's jobs
    extra = [f"threads={worker_threads(workers)}"] \
        if workers > 1 and cfg.get("threads") == "auto" else []
    budget = Budget(spec["n_trials"], workers)
    if workers == 1:
        worker(spec, base, extra, 0, budget, study)
    else:
        run_workers(worker, (spec, base, extra), budget, study, spec)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        failed = [t.user_attrs["fail_reason"] for t in trials
                  if t.state == optuna.trial.TrialState.FAIL and "fail_reason" in t.user_attrs]
        last = f"; the last failure: {failed[-1]}" if failed else ""
        raise SearchError(f"no trial completed (all pruned or failed{last}); widen "
                          f"search.params or set search.pruner=null")
    path = best_experiment(study, spec, base, Path(spec["dir"]) / "experiment" /
                           f"{spec['study_name']}_best.yaml")
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    result = {"best_value": study.best_value, "best_params": study.best_params,
              "best_trial": study.best_trial.number, "trials": len(trials),
              "states": {k: v for k, v in states.items() if v}, "experiment": str(path)}
    log.info("best: trial %d, %s %.4f, %s -> %s", study.best_trial.number, spec["metric"],
             study.best_value, study.best_params, path)
    return result


def worker(spec: dict[str, Any], base: list[str], extra: list[str], index: int,
           budget: Budget, study: Any = None) -> None:
    """One of search.workers processes (its own connection to the study), or the search's
    own process where it has one worker: trials until the command's budget is spent."""
    if study is None:
        study = open_study(spec, trial_seeded_tpe(spec["seed"]), pruner(spec))
    trial_loop(study, lambda trial: run_trial(trial, spec, base, extra), spec, index, budget,
               stops=CONFIG_ERRORS)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        result = search(sys.argv[1:] if argv is None else argv)
    except (EmotionLabError, HydraException, OmegaConfBaseException) as e:
        return user_error(e)
    print(yaml.safe_dump(result, sort_keys=False).strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
