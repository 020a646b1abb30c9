"""How far a test score could move with another draw of test examples: bootstrap intervals
(scipy.stats.bootstrap over test examples) for a run or a group of seeds, and paired
differences between two groups scored on the same resamples.

A resample of the n test examples is represented by its weights (how often each example was
drawn, `np.bincount` of the drawn indices), so each statistic is a few matrix products over
indicator arrays prepared once per run, not a re-evaluation from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap

from emotion_lab.evaluation.error_analysis import predictions


@dataclass(frozen=True)
class RunScores:
    """One run's test predictions, laid out for weighted macro-F1 and PR-AUC."""

    tp: np.ndarray       # (n, L) 1.0 where predicted and true
    fp: np.ndarray       # (n, L) predicted, not true
    fn: np.ndarray       # (n, L) true, not predicted
    order: np.ndarray    # (n, L) example indices by falling probability, per label
    sorted_labels: np.ndarray  # (n, L) labels in that order

    @classmethod
    def of(cls, probs: np.ndarray, labels: np.ndarray,
           thresholds: np.ndarray | None) -> RunScores:
        """`thresholds` None: single-label runs, the arg-max is the prediction."""
        preds = predictions(probs, thresholds).astype(bool)
        truth = labels.astype(bool)
        order = np.argsort(-probs, axis=0, kind="stable")
        return cls(tp=(preds & truth).astype(np.float64), fp=(preds & ~truth).astype(np.float64),
                   fn=(~preds & truth).astype(np.float64), order=order,
                   sorted_labels=np.take_along_axis(labels.astype(np.float64), order, axis=0))

    @property
    def n(self) -> int:
        return self.tp.shape[0]

    def macro_f1(self, weights: np.ndarray) -> float:
        """Macro-F1 of the resample with these example weights (all ones: the test set)."""
        tp, fp, fn = weights @ self.tp, weights @ self.fp, weights @ self.fn
        den = 2 * tp + fp + fn
        return float(np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0).mean())

    def macro_pr_auc(self, weights: np.ndarray) -> float:
        """Macro average precision of the resample; labels with no positive drawn are left
        out, as pr_auc_per_label leaves out labels with no positive example."""
        w = weights[self.order]
        hits = w * self.sorted_labels
        positives = hits.sum(axis=0)
        precision = np.cumsum(hits, axis=0) / np.maximum(np.cumsum(w, axis=0), 1e-12)
        ap = np.divide((hits * precision).sum(axis=0), positives,
                       out=np.full(positives.shape, np.nan), where=positives > 0)
        return float(np.nanmean(ap))


METRICS: dict[str, Callable[[RunScores, np.ndarray], float]] = {
    "macro_f1": RunScores.macro_f1, "macro_pr_auc": RunScores.macro_pr_auc}


@dataclass(frozen=True)
class Interval:
    estimate: float  # on the whole test set
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.low:.4f}, {self.high:.4f}]"

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Bootstrap:
    """scipy.stats.bootstrap's settings: resamples, seed, confidence, method."""

    n_resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    # percentile: no jackknife pass (BCa's costs one statistic per test example)
    method: str = "percentile"

    def interval(self, statistic: Callable[[np.ndarray], float], n: int) -> Interval:
        """Interval of statistic(weights) over resamples of n examples."""
        def on_indices(indices: np.ndarray) -> float:
            return statistic(np.bincount(indices.astype(np.intp), minlength=n)
                             .astype(np.float64))

        result = bootstrap((np.arange(n),), on_indices, vectorized=False,
                           n_resamples=self.n_resamples, confidence_level=self.confidence,
                           method=self.method, rng=np.random.default_rng(self.seed))
        ci = result.confidence_interval
        return Interval(statistic(np.ones(n)), float(ci.low), float(ci.high))


def check_same_test_set(groups: Sequence[Sequence[RunScores]]) -> int:
    """The number of test examples, after checking every run saw the same ones (the same
    labels in the same order)."""
    runs = [s for group in groups for s in group]
    first = runs[0].tp + runs[0].fn
    if any(s.n != runs[0].n or not np.array_equal(s.tp + s.fn, first) for s in runs[1:]):
        raise ValueError("runs scored on different test sets (other examples, or another "
                         "order) cannot share bootstrap resamples")
    return runs[0].n


def group_interval(group: Sequence[RunScores], metric: str, settings: Bootstrap) -> Interval:
    """Interval of the group's mean `metric` (the mean over its seeds, each resample scoring
    every seed on the same examples); a group of one is one run's interval."""
    score = METRICS[metric]
    n = check_same_test_set([group])
    return settings.interval(lambda w: float(np.mean([score(s, w) for s in group])), n)


def paired_difference(a: Sequence[RunScores], b: Sequence[RunScores], metric: str,
                      settings: Bootstrap) -> Interval:
    """Interval of mean_a - mean_b, both scored on each resample: the pairing removes the
    variation the two share (which test examples are hard), so differences far smaller
    than either interval's width can be told apart from zero."""
    score = METRICS[metric]
    n = check_same_test_set([a, b])
    return settings.interval(lambda w: float(np.mean([score(s, w) for s in a])
                                             - np.mean([score(s, w) for s in b])), n)
