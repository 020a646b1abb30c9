"""Hyperparameter search with Optuna: `python -m emotion_lab.search hparams_search=<name>`.

    python -m emotion_lab.search hparams_search=minilm_lora search.n_trials=20
    python -m emotion_lab.search hparams_search=minilm_lora search.n_trials=10   # resumes
    python -m emotion_lab.search hparams_search=minilm_lora backbone=distilbert  # any override

The search config (conf/hparams_search/) names the study, its SQLite storage, the metric
(validation only: a test metric is refused), the pruner and each parameter's distribution.
Every trial composes the training config from the command's overrides, the search's
`fixed` overrides and the trial's values, runs `train()` into <search.dir>/trial_<n>/, and
reports val macro-F1 after every epoch so the median pruner can stop a bad trial early.
Trials are recorded in the storage as they finish, so a stopped search resumes where it
was, and several processes may run one study at once: each trial draws its values afresh
(`trial_seeded_tpe`). A trial that raises is stored FAIL with its message (user attr
`fail_reason`); `search.on_error` says whether the search goes on. At the end the best
trial is printed and written as an experiment config:
<search.dir>/experiment/<study>_best.yaml, run with
`python -m emotion_lab.train 'hydra.searchpath=[file://<search.dir>]' experiment=<study>_best`.

(hydra-optuna-sweeper pins optuna below 3; this drives Optuna's current API instead.)
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
ON_ERROR = ("stop", "continue")
# errors that fail every trial alike (a setting, an override naming no config key): the
# search stops at the first, whatever search.on_error says
CONFIG_ERRORS = (EmotionLabError, HydraException, OmegaConfBaseException)


class ReportToTrial(L.Callback):
    """After each validation epoch: report the metric to the trial; stop it if the pruner
    says it is worse than the median of earlier trials at that epoch."""

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

    n = spec.get("n_trials")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        refuse("n_trials", n, "the number of trials to add; an integer >= 1")
    if spec.get("direction") not in ("maximize", "minimize"):
        refuse("direction", spec.get("direction"), "use maximize or minimize")
    if spec.get("on_error") not in ON_ERROR:
        refuse("on_error", spec.get("on_error"), f"use {' or '.join(ON_ERROR)}")
    seed = spec.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
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


def trial_seeded_tpe(seed: int | None) -> Any:
    """A TPE sampler whose randomness comes from (search seed, trial number).

    Seeded once per process, every start of the search would draw the same sequence: a
    resumed study replays its first trials' parameters, and two workers on one study
    propose the same trials (the startup trials are random samples, so all of them
    repeat). Trial numbers are handed out by the storage, once each across processes and
    restarts, so reseeding from them before each trial never repeats a draw and keeps the
    search reproducible. Optuna 5 keeps TPE's own RNG in `_rng` and its startup sampler's
    in `_random_sampler._rng` (no public way to seed a trial); a rename fails loudly here.
    """
    import numpy as np
    import optuna

    class TrialSeededTPE(optuna.samplers.TPESampler):
        def before_trial(self, study: Any, trial: Any) -> None:
            if seed is not None:
                state = int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0])
                self._rng.rng.seed(state)
                self._random_sampler._rng.rng.seed(state)
            super().before_trial(study, trial)

    return TrialSeededTPE(seed=seed)


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
    path.write_text(header + body, encoding="utf-8")
    return path


def run_trial(trial: Any, spec: dict[str, Any], base: list[str], directory: Path) -> float:
    """One trial: suggest its values, train into <dir>/trial_<n>/; the metric's value."""
    values = {name: suggest(trial, name, p) for name, p in spec["params"].items()}
    run_dir = directory / f"trial_{trial.number}"
    overrides = [*base, *spec["fixed"], *(override(k, v) for k, v in values.items()),
                 f"paths.output_dir={run_dir}", f"paths.sweep_group={directory}"]
    log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in values.items()))
    metrics, _ = train(compose_train(overrides), callbacks=[ReportToTrial(trial, spec["metric"])])
    if spec["metric"] not in metrics:
        raise SearchError(f"search.metric={spec['metric']}: the run logged no such metric; "
                          f"one of {', '.join(sorted(metrics))}")
    return float(metrics[spec["metric"]])


def search(overrides: list[str]) -> dict[str, Any]:
    """Run (or resume) the study; returns {best_value, best_params, trials, experiment}."""
    import optuna

    cfg = compose_train(overrides)
    if cfg.get("search") is None:
        known = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))
        raise SearchError(f"no search configured: add hparams_search=<name> (one of "
                          f"{', '.join(known)})")
    spec = OmegaConf.to_container(cfg.search, resolve=True)
    spec.setdefault("on_error", "continue")
    check(spec)
    if spec["metric"].startswith("test/"):
        raise SearchError(f"search.metric={spec['metric']}: a search must never choose on the "
                          f"test split; use a val/ metric (val/macro_f1).")
    # trials compose the training config: the search's own settings stay out, and each
    # trial gets its own output directory and the search's W&B group
    base = [o for o in overrides if not o.lstrip("+~").startswith(
        ("hparams_search=", "search.", "paths.output_dir=", "paths.sweep_group="))]
    directory = Path(spec["dir"])
    directory.mkdir(parents=True, exist_ok=True)
    pruner = optuna.pruners.MedianPruner(**spec["pruner"]) if spec.get("pruner") \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=spec["study_name"], storage=spec["storage"],
                                direction=spec["direction"], load_if_exists=True, pruner=pruner,
                                sampler=trial_seeded_tpe(spec["seed"]))
    log.info("study %s (%s): %d trial(s) stored; adding %d", spec["study_name"],
             spec["storage"], len(study.trials), spec["n_trials"])
    for _ in range(spec["n_trials"]):
        trial = study.ask()
        try:
            value = run_trial(trial, spec, base, directory)
        except optuna.TrialPruned as e:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            log.info("trial %d pruned: %s", trial.number, e)
            continue
        except (Exception, KeyboardInterrupt) as e:
            # stored FAIL with its reason, never left RUNNING; stop or go on as configured
            reason = f"{type(e).__name__}: {e}".removesuffix(": ")
            trial.set_user_attr("fail_reason", reason)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if isinstance(e, (KeyboardInterrupt, *CONFIG_ERRORS)) or spec["on_error"] == "stop":
                raise
            log.warning("trial %d failed, going on (search.on_error=continue): %s",
                        trial.number, " ".join(reason.split()))
            continue
        study.tell(trial, value)
        log.info("trial %d: %s %.4f", trial.number, spec["metric"], value)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        failed = [t.user_attrs["fail_reason"] for t in study.trials
                  if t.state == optuna.trial.TrialState.FAIL and "fail_reason" in t.user_attrs]
        last = f"; the last failure: {failed[-1]}" if failed else ""
        raise SearchError(f"no trial completed (all pruned or failed{last}); widen "
                          f"search.params or set search.pruner=null")
    path = best_experiment(study, spec, base, directory / "experiment" /
                           f"{spec['study_name']}_best.yaml")
    result = {"best_value": study.best_value, "best_params": study.best_params,
              "best_trial": study.best_trial.number, "trials": len(study.trials),
              "experiment": str(path)}
    log.info("best: trial %d, %s %.4f, %s -> %s", study.best_trial.number, spec["metric"],
             study.best_value, study.best_params, path)
    return result


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
