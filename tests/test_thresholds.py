"""Threshold policies on constructed probabilities whose best thresholds are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_lab.evaluation.metrics import f1_scores
from emotion_lab.evaluation.thresholds import fixed, grid, tune_global, tune_per_label


def separable(pos: float = 0.7, neg: float = 0.2):
    """Two labels, eight examples. Label 0: its three positives at `pos`, the rest at `neg`.
    Label 1: its four positives at 0.9, the rest at 0.5 (best threshold 0.51).
    (torchmetrics' multilabel scores need at least two labels.)"""
    probs = np.array([[pos, 0.9]] * 3 + [[neg, 0.9]] + [[neg, 0.5]] * 4, dtype=np.float32)
    labels = np.array([[1, 1]] * 3 + [[0, 1]] + [[0, 0]] * 4, dtype=np.float32)
    return probs, labels


# Two labels, four examples. Label A's F1 by threshold t: (0.1, 0.4] 0.8, (0.4, 0.6] 1.0,
# (0.6, 0.9] 2/3. Label B's: (0.2, 0.3] 0.8, (0.3, 0.35] 0.5, (0.35, 0.55] 2/3, above 0.
# Macro-F1: (0.2, 0.3] 0.8, (0.4, 0.55] (1 + 2/3) / 2 = 0.8333 (the best), (0.55, 0.6] 0.5.
TWO_LABEL_PROBS = np.array([[0.9, 0.55], [0.6, 0.35], [0.4, 0.30], [0.1, 0.20]], dtype=np.float32)
TWO_LABEL_LABELS = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=np.float32)


def test_grid_is_strictly_inside_zero_one():
    g = grid(0.01)
    assert len(g) == 99
    assert g[0] == pytest.approx(0.01) and g[-1] == pytest.approx(0.99)
    assert np.all(np.diff(g) > 0)


def test_fixed_gives_the_value_for_every_label():
    probs = np.random.default_rng(0).random((10, 5))
    out = fixed(probs, np.zeros((10, 5)), value=0.3)
    assert out.shape == (5,)
    np.testing.assert_array_equal(out, np.full(5, 0.3))
    np.testing.assert_array_equal(fixed(probs, np.zeros((10, 5))), np.full(5, 0.5))


def test_per_label_separates_positives_from_negatives():
    probs, labels = separable(pos=0.7, neg=0.2)
    thresholds = tune_per_label(probs, labels)
    assert 0.2 < thresholds[0] <= 0.7
    # the lowest of the tied perfect thresholds
    np.testing.assert_allclose(thresholds, [0.21, 0.51])
    np.testing.assert_array_equal(f1_scores(probs, labels, thresholds)["f1"], [1.0, 1.0])


def test_per_label_tunes_each_label_on_its_own():
    thresholds = tune_per_label(TWO_LABEL_PROBS, TWO_LABEL_LABELS)
    np.testing.assert_allclose(thresholds, [0.41, 0.21])


def test_per_label_label_without_positives_keeps_the_fallback():
    probs, labels = separable()
    probs = np.hstack([probs, np.linspace(0.05, 0.95, len(probs))[:, None]])
    labels = np.hstack([labels, np.zeros((len(labels), 1))])  # label 2 never occurs
    np.testing.assert_allclose(tune_per_label(probs, labels), [0.21, 0.51, 0.5])
    np.testing.assert_allclose(tune_per_label(probs, labels, fallback=0.37), [0.21, 0.51, 0.37])


def test_per_label_respects_the_step():
    probs, labels = separable(pos=0.7, neg=0.2)
    thresholds = tune_per_label(probs, labels, step=0.1)
    # grid 0.1, 0.2, 0.3...: 0.2 still fires on label 0's negatives, 0.5 on label 1's
    np.testing.assert_allclose(thresholds, [0.3, 0.6])


def test_global_picks_the_best_macro_f1_threshold():
    thresholds = tune_global(TWO_LABEL_PROBS, TWO_LABEL_LABELS)
    np.testing.assert_allclose(thresholds, [0.41, 0.41])
    macro = f1_scores(TWO_LABEL_PROBS, TWO_LABEL_LABELS, thresholds)["macro_f1"]
    assert macro == pytest.approx((1 + 2 / 3) / 2)
    # and it beats the per-label optimum of label B applied to both
    assert macro > f1_scores(TWO_LABEL_PROBS, TWO_LABEL_LABELS, np.full(2, 0.21))["macro_f1"]


def test_policies_use_probabilities_not_logits():
    """A policy fitted on probabilities returns thresholds inside (0, 1)."""
    rng = np.random.default_rng(1)
    probs = rng.random((50, 4))
    labels = (rng.random((50, 4)) < 0.3).astype(float)
    for policy in (tune_global, tune_per_label):
        t = policy(probs, labels)
        assert t.shape == (4,)
        assert np.all((t > 0) & (t < 1))
