"""From a trained model's validation and test probabilities to a finished evaluation:
calibrate (optional), fit thresholds, evaluate both splits, evaluate grouped label levels.

Everything is fitted on validation only, frozen, then applied to test. Training calls
`evaluate_run` on the best checkpoint's predictions; a post-hoc evaluation of a saved run can
call it on the run's saved arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emotion_lab.evaluation.calibration import apply_temperature, brier_per_label, ece_per_label
from emotion_lab.evaluation.grouped import evaluate_grouped
from emotion_lab.evaluation.metrics import evaluate
from emotion_lab.evaluation.thresholds import calibrate

log = logging.getLogger(__name__)

ThresholdPolicy = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class RunEvaluation:
    """What a run directory records of an evaluation."""

    metrics: dict[str, Any]  # split/metric[/...] summaries, grouped levels, calibration choices
    per_label: dict[str, list[dict]]  # split (or split/taxonomy) -> one row per label
    thresholds: np.ndarray | None  # fitted on validation; None: single-label, arg-max
    calibration: str = "none"  # the temperature scaling applied ("none" when it did not apply)
    temperatures: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # name -> array, as saved
    # generative models: split -> one row per example (answer, parsed labels, rationale)
    answers: dict[str, list[dict]] = field(default_factory=dict)


def evaluate_run(val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray,
                 test_labels: np.ndarray, label_names: list[str], *,
                 threshold_policy: ThresholdPolicy, calibration: str = "none",
                 calibration_grid: dict | None = None, single_label: bool = False,
                 taxonomies: Sequence[str] = ()) -> RunEvaluation:
    """Calibrate and fit thresholds on validation, then evaluate validation and test, and the
    grouped levels of `taxonomies` (multi-label only).

    `calibration`: none | global | per_label | joint (see thresholds.calibrate). Single-label
    runs predict the arg-max class: no thresholds, no temperature scaling.
    """
    uncalibrated: dict[str, np.ndarray] = {}
    temperatures, calibration_info = None, {}
    if calibration != "none" and single_label:
        log.warning("calibration=%s: temperature scaling here is per-label sigmoid scaling, "
                    "for multi-label runs; ignored.", calibration)
    elif calibration != "none":
        temperatures, calibration_info = calibrate(calibration, val_probs, val_labels,
                                                   threshold_policy, calibration_grid)
        uncalibrated = {"val": val_probs, "test": test_probs}
        val_probs = apply_temperature(val_probs, temperatures)
        test_probs = apply_temperature(test_probs, temperatures)

    thresholds = None if single_label else threshold_policy(val_probs, val_labels)
    metrics: dict[str, Any] = {}
    per_label: dict[str, list[dict]] = {}
    for split, probs, labels in (("val", val_probs, val_labels),
                                 ("test", test_probs, test_labels)):
        summary, per_label[split] = evaluate(probs, labels, thresholds, label_names, split)
        metrics |= summary
        if split in uncalibrated:  # the same scores before scaling, for before/after
            raw = uncalibrated[split]
            metrics[f"{split}/macro_ece_uncalibrated"] = float(ece_per_label(raw, labels).mean())
            metrics[f"{split}/macro_brier_uncalibrated"] = float(
                brier_per_label(raw, labels).mean())
    if not single_label:
        grouped, grouped_rows = evaluate_grouped(
            {"val": val_probs, "test": test_probs}, {"val": val_labels, "test": test_labels},
            label_names, list(taxonomies), threshold_policy)
        metrics |= grouped
        per_label |= grouped_rows

    arrays = {"val_probs": val_probs, "val_labels": val_labels,
              "test_probs": test_probs, "test_labels": test_labels,
              **{f"{split}_probs_uncalibrated": p for split, p in uncalibrated.items()}}
    return RunEvaluation(metrics | calibration_info, per_label, thresholds,
                         "none" if temperatures is None else calibration, temperatures, arrays)
