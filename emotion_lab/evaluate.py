"""Hydra face of post-hoc evaluation: new threshold policies and calibrations for a finished
run, from its saved validation arrays, without training again.

    python -m emotion_lab.evaluate run_dir=outputs/train/runs/<time> threshold=global
    python -m emotion_lab.evaluate -m run_dir=<run> threshold=fixed,global,per_label \
        calibration=none,global,per_label

Thresholds and temperatures are fitted on the run's validation probabilities only (the raw
ones, before any temperature the run itself applied) and frozen for test, by the same
`evaluate_run` that training calls. Each variant lands in
<run_dir>/evaluations/<threshold>_<calibration>/ with the files `python -m
emotion_lab.report` reads; `python -m emotion_lab.report <run_dir>` compares them all.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from emotion_lab.cli import check_overrides, hydra_face
from emotion_lab.data.types import Problem
from emotion_lab.errors import GateError
from emotion_lab.evaluation.figures import plot_confusion
from emotion_lab.evaluation.run_evaluation import evaluate_run
from emotion_lab.rundir import (
    RunDirError,
    load_arrays,
    read_json,
    read_metrics,
    write_evaluation,
    write_json,
)

log = logging.getLogger(__name__)
# what the variant takes from the run as it is (the rest is the new evaluation)
RUN_FACTS = ("run_format", "model", "backbone", "adapter", "problem_type", "taxonomy",
             "num_labels", "precision", "eval_precision", "test/macro_f1_frequency_baseline",
             "params/trainable", "params/total", "params/trainable_share", "time/fit_seconds",
             "time/feature_seconds", "time/train_seconds", "time/train_samples_per_second",
             "train/samples_seen", "epochs", "global_steps", "best_checkpoint")


def raw_arrays(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's probabilities before any temperature the run applied, and its labels."""
    raw = run_dir / f"{split}_probs_uncalibrated.npy"
    if raw.is_file():  # the calibrated copy is not needed (kept runs may lack it)
        return np.load(raw), np.load(run_dir / f"{split}_labels.npy")
    return load_arrays(run_dir, split)


def evaluate(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Fit cfg.threshold and cfg.calibration on the run's validation arrays, evaluate, and
    write the variant into `out`; returns its metrics."""
    run_dir = Path(cfg.run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise RunDirError(f"run_dir={run_dir}: no metrics.json; give a run directory written "
                          f"by python -m emotion_lab.train.")
    facts = read_metrics(run_dir)
    labels = list(read_json(run_dir / "label_map.json").values())
    config = OmegaConf.load(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() \
        else OmegaConf.create({})
    single_label = Problem(facts.get("problem_type", "multi_label")).single_label
    val_probs, val_labels = raw_arrays(run_dir, "val")
    test_probs, test_labels = raw_arrays(run_dir, "test")
    evaluation = evaluate_run(
        val_probs, val_labels, test_probs, test_labels, labels,
        threshold_policy=instantiate(cfg.threshold.policy), calibration=cfg.calibration.name,
        calibration_grid=cfg.calibration.get("grid"), single_label=single_label,
        taxonomies=list(OmegaConf.select(config, "data.eval_taxonomies", default=[]) or []))
    metrics = {k: facts[k] for k in RUN_FACTS if k in facts} | {
        "threshold_policy": "argmax" if single_label else cfg.threshold.name,
        "calibration": evaluation.calibration, "evaluated_from": str(run_dir),
        **evaluation.metrics}
    write_evaluation(out, metrics, evaluation, labels)
    plot_confusion(out, evaluation, labels)
    for name in ("data_report.json", "test_texts.json"):  # the report's counts and errors
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, out / name)
    write_json(out / "evaluate_config.json", OmegaConf.to_container(cfg, resolve=True))
    log.info("%s thresholds, calibration %s: val macro-F1 %.4f, test macro-F1 %.4f -> %s",
             metrics["threshold_policy"], metrics["calibration"], metrics["val/macro_f1"],
             metrics["test/macro_f1"], out)
    return metrics



def passes_gate(metrics: dict[str, Any], metric: str, minimum: float | None) -> bool:
    """Whether metrics[metric] >= minimum (always, without a minimum); logs the verdict."""
    if minimum is None:
        return True
    if metric not in metrics:
        near = [k for k in metrics if k.split("/")[-1] == metric.split("/")[-1]] or \
            [k for k in metrics if k.startswith(("val/", "test/"))][:8]
        raise GateError(f"gate.metric={metric}: not in the evaluation's metrics; "
                        f"for example {', '.join(near)}")
    value = metrics[metric]
    ok = value is not None and value >= minimum
    (log.info if ok else log.error)("gate: %s = %.4f %s %.4f", metric,
                                    float("nan") if value is None else value,
                                    ">=" if ok else "<", minimum)
    return ok


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@hydra_face
def main(cfg: DictConfig) -> float | None:
    metrics = evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))
    gate = cfg.get("gate") or {}
    passed = passes_gate(metrics, gate.get("metric", "test/macro_f1"), gate.get("min"))
    if not passed:
        sys.exit(1)
    return metrics.get("val/macro_f1")


if __name__ == "__main__":
    check_overrides("evaluate")
    main()
