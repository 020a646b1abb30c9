"""Threshold policies: pure functions (probs, labels) -> one threshold per label, and the
calibration step that precedes them (temperatures, alone or searched with the thresholds).

All are fitted on validation probabilities only, then frozen and applied to test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from emotion_lab.evaluation.calibration import apply_temperature, fit_temperature
from emotion_lab.evaluation.metrics import f1_scores

log = logging.getLogger(__name__)


def grid(step: float = 0.01) -> np.ndarray:
    """Candidate thresholds strictly between 0 and 1."""
    return np.round(np.arange(step, 1.0, step), 6)


def _f1_over_grid(probs: np.ndarray, labels: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(len(candidates), num_labels) F1 of each label at each candidate threshold."""
    return np.stack([f1_scores(probs, labels, np.full(probs.shape[1], t))["f1"]
                     for t in candidates])


def fixed(probs: np.ndarray, labels: np.ndarray, value: float = 0.5) -> np.ndarray:
    """The same threshold for every label (0.3 is the GoEmotions paper's policy)."""
    return np.full(probs.shape[1], float(value))


def tune_global(probs: np.ndarray, labels: np.ndarray, step: float = 0.01) -> np.ndarray:
    """One threshold for all labels, the one with the best macro-F1 (lowest on ties)."""
    candidates = grid(step)
    macro = _f1_over_grid(probs, labels, candidates).mean(axis=1)
    return np.full(probs.shape[1], candidates[int(np.argmax(macro))])


def tune_per_label(probs: np.ndarray, labels: np.ndarray, step: float = 0.01,
                   fallback: float = 0.5) -> np.ndarray:
    """Each label's own best-F1 threshold (lowest on ties). A label with no positives in the
    fitting data has nothing to tune against and keeps `fallback`."""
    candidates = grid(step)
    best = candidates[np.argmax(_f1_over_grid(probs, labels, candidates), axis=0)]
    absent = labels.sum(axis=0) == 0
    if absent.any():
        log.warning("%d label(s) have no positive example to tune on; they keep threshold %.2f",
                    int(absent.sum()), fallback)
        best[absent] = fallback
    return best


def temperature_grid(low: float = 0.25, high: float = 4.0, num: int = 17) -> np.ndarray:
    """Candidate global temperatures, spaced evenly in log T (1.0 is among the defaults)."""
    return np.round(np.geomspace(low, high, num), 6)


def joint_search(probs: np.ndarray, labels: np.ndarray,
                 fit_thresholds: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 temperatures: np.ndarray) -> tuple[float, float]:
    """(T, macro-F1): the global temperature whose scaled probabilities, with thresholds
    fitted on them by `fit_thresholds`, give the best macro-F1 (lowest |log T| on ties)."""
    best_t, best_f1 = 1.0, -1.0
    for t in sorted(temperatures, key=lambda t: abs(np.log(t))):
        scaled = apply_temperature(probs, t)
        f1 = f1_scores(scaled, labels, fit_thresholds(scaled, labels))["macro_f1"]
        if f1 > best_f1:
            best_t, best_f1 = float(t), f1
    return best_t, best_f1


def calibrate(name: str, probs: np.ndarray, labels: np.ndarray,
              fit_thresholds: Callable[[np.ndarray, np.ndarray], np.ndarray],
              grid: dict | None = None) -> tuple[np.ndarray | None, dict[str, Any]]:
    """(temperatures or None, what was chosen) for calibration policy `name`, on validation.

    `global` / `per_label` fit T by validation BCE. `joint` also searches a global T together
    with the thresholds for validation macro-F1, keeps it only if it beats the BCE-fitted T
    on validation, and reports both."""
    if name == "none":
        return None, {}
    fitted = fit_temperature(probs, labels, per_label=name == "per_label")
    if name != "joint":
        return fitted, {}
    scaled = apply_temperature(probs, fitted)
    fitted_f1 = f1_scores(scaled, labels, fit_thresholds(scaled, labels))["macro_f1"]
    t, joint_f1 = joint_search(probs, labels, fit_thresholds, temperature_grid(**(grid or {})))
    chosen = "joint_search" if joint_f1 > fitted_f1 else "bce_fit"
    log.info("calibration=joint: BCE-fitted T=%.3f gives val macro-F1 %.4f, searched T=%.3f "
             "gives %.4f; keeping %s", fitted[0], fitted_f1, t, joint_f1, chosen)
    info = {"calibration/chosen": chosen, "calibration/bce_temperature": float(fitted[0]),
            "calibration/search_temperature": t,
            "val/macro_f1_bce_temperature": fitted_f1, "val/macro_f1_search_temperature": joint_f1}
    return (np.full(probs.shape[1], t) if chosen == "joint_search" else fitted), info
