"""Threshold policies: pure functions (probs, labels) -> one threshold per label.

They are fitted on validation probabilities only, then frozen and applied to test.
"""

from __future__ import annotations

import logging

import numpy as np

from emotion_lab.metrics import f1_scores

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
