"""metrics.evaluate() on an example small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emotion_lab.evaluation.metrics import evaluate, f1_scores, frequency_baseline, pr_auc_per_label

NAMES = ["a", "b", "c"]
# At threshold 0.5:
#   a: labels 1 1 0 0, preds 1 0 1 0 -> tp 1 fp 1 fn 1: P 1/2, R 1/2, F1 1/2
#   b: labels 1 0 1 1, preds 1 0 1 0 -> tp 2 fp 0 fn 1: P 1,   R 2/3, F1 4/5
#   c: labels 0 0 0 0, preds 1 0 0 0 -> tp 0 fp 1 fn 0: P 0,   R 0,   F1 0
# micro: tp 3 fp 2 fn 2 -> 6 / 10.
# At 0.3: b predicts 1 0 1 1 (F1 1), c predicts 1 0 0 1 (F1 0), a unchanged.
# Average precision: a ranks pos 0.9, neg 0.7, pos 0.2 -> 1/2 * 1 + 1/2 * 2/3 = 5/6;
#   b ranks its three positives first -> 1; c has no positive -> NaN, left out of the mean.
PROBS = np.array([[0.9, 0.6, 0.6],
                  [0.2, 0.1, 0.1],
                  [0.7, 0.8, 0.2],
                  [0.1, 0.3, 0.3]], dtype=np.float32)
LABELS = np.array([[1, 1, 0],
                   [1, 0, 0],
                   [0, 1, 0],
                   [0, 1, 0]], dtype=np.float32)


def test_evaluate_summary_by_hand():
    summary, _ = evaluate(PROBS, LABELS, np.full(3, 0.5), NAMES, "test")
    expected = {
        "test/macro_f1": (1 / 2 + 4 / 5 + 0) / 3,
        "test/micro_f1": 6 / 10,
        "test/macro_precision": (1 / 2 + 1 + 0) / 3,
        "test/macro_recall": (1 / 2 + 2 / 3 + 0) / 3,
        "test/macro_pr_auc": (5 / 6 + 1) / 2,
        "test/macro_f1_at_0.5": (1 / 2 + 4 / 5 + 0) / 3,
        "test/micro_f1_at_0.5": 6 / 10,
        "test/macro_f1_at_0.3": (1 / 2 + 1 + 0) / 3,
        "test/micro_f1_at_0.3": 2 * 4 / (2 * 4 + 3 + 1),  # tp 4, fp a1 + c2, fn a1
    }
    # calibration (ECE, Brier) has its own known-answer test below
    assert set(summary) == set(expected) | {"test/macro_ece", "test/macro_brier"}
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value), key


def test_evaluate_uses_the_given_thresholds():
    # label b at 0.25 fires on all four examples: tp 3 fp 1 -> F1 6/7
    summary, rows = evaluate(PROBS, LABELS, np.array([0.5, 0.05, 0.5]), NAMES, "val")
    assert rows[1]["f1"] == pytest.approx(6 / 7)
    assert summary["val/macro_f1"] == pytest.approx((1 / 2 + 6 / 7 + 0) / 3)
    assert summary["val/macro_f1_at_0.5"] == pytest.approx((1 / 2 + 4 / 5) / 3)


def test_evaluate_per_label_rows():
    thresholds = np.array([0.5, 0.4, 0.6])
    _, rows = evaluate(PROBS, LABELS, thresholds, NAMES, "test")
    assert [r["label"] for r in rows] == NAMES
    assert [r["support"] for r in rows] == [2, 3, 0]
    assert [r["threshold"] for r in rows] == pytest.approx(thresholds.tolist())
    a, b, c = rows
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((1, 2 / 3, 0.8))
    assert a["pr_auc"] == pytest.approx(5 / 6)
    assert b["pr_auc"] == pytest.approx(1.0)
    assert (c["precision"], c["recall"], c["f1"]) == (0.0, 0.0, 0.0)
    assert math.isnan(c["pr_auc"])


def test_pr_auc_is_nan_only_for_labels_without_positives():
    ap = pr_auc_per_label(PROBS, LABELS)
    assert np.isnan(ap[2]) and np.isfinite(ap[:2]).all()


def test_macro_pr_auc_without_any_positive_is_zero_not_nan():
    summary, rows = evaluate(PROBS, np.zeros_like(LABELS), np.full(3, 0.5), NAMES, "test")
    assert summary["test/macro_pr_auc"] == 0.0
    assert all(math.isnan(r["pr_auc"]) for r in rows)
    assert summary["test/macro_f1"] == 0.0


def test_micro_and_macro_agree_on_a_perfect_model():
    scores = f1_scores(LABELS, LABELS, np.full(3, 0.5))
    assert scores["micro_f1"] == 1.0
    # label c has no positive and no prediction: F1 0 by convention, so macro is 2/3
    assert scores["macro_f1"] == pytest.approx(2 / 3)


def test_frequency_baseline_is_far_below_a_perfect_model():
    rng = np.random.default_rng(0)
    frequencies = rng.uniform(0.03, 0.3, size=28)
    labels = (rng.random((500, 28)) < frequencies).astype(np.float32)
    perfect, _ = evaluate(labels, labels, np.full(28, 0.5), [str(i) for i in range(28)], "test")
    baseline = frequency_baseline(frequencies, labels, seed=0)
    assert perfect["test/macro_f1"] == 1.0
    # a random guess at frequency p has expected F1 about p: the mean frequency, ~0.17
    assert 0.0 < baseline < 0.3
    assert baseline == pytest.approx(frequencies.mean(), abs=0.05)
    assert frequency_baseline(frequencies, labels, seed=0) == baseline  # seeded


def test_evaluate_reports_calibration():
    probs = np.array([[0.1, 0.8], [0.9, 0.2], [0.8, 0.6], [0.3, 0.1]])
    labels = np.array([[0, 1], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    summary, rows = evaluate(probs, labels, np.full(2, 0.5), ["a", "b"], "val")
    assert rows[0]["ece"] == pytest.approx(0.425)  # each example alone in its bin
    assert rows[0]["brier"] == pytest.approx((0.01 + 0.01 + 0.64 + 0.49) / 4)
    assert summary["val/macro_ece"] == pytest.approx(np.mean([r["ece"] for r in rows]))
    assert summary["val/macro_brier"] == pytest.approx(np.mean([r["brier"] for r in rows]))
