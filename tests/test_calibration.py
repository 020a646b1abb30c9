"""Calibration metrics and temperature scaling: known answers and recovery of a known T."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_lab.evaluation.calibration import (
    apply_temperature,
    brier_per_label,
    ece_per_label,
    fit_temperature,
)


def test_ece_known_answer():
    probs = np.array([[0.1], [0.9], [0.8], [0.3]], dtype=np.float32)
    labels = np.array([[0], [1], [0], [1]], dtype=np.float32)
    # every example alone in a bin of 10: mean |y - p| = (0.1 + 0.1 + 0.8 + 0.7) / 4
    assert ece_per_label(probs, labels, n_bins=10)[0] == pytest.approx(0.425)


def test_perfectly_calibrated_bins_have_zero_ece():
    probs = np.full((10, 1), 0.3, dtype=np.float32)
    labels = np.array([[1]] * 3 + [[0]] * 7, dtype=np.float32)
    assert ece_per_label(probs, labels)[0] == pytest.approx(0.0, abs=1e-6)


def test_brier_known_answer():
    probs = np.array([[0.0, 0.5], [1.0, 0.5]])
    labels = np.array([[0, 1], [0, 0]])
    np.testing.assert_allclose(brier_per_label(probs, labels), [0.5, 0.25])


def overconfident(n: int = 4000, temperature: float = 2.5, seed: int = 0):
    """Labels drawn from true logits; predictions are those logits x `temperature`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, 3))
    labels = (rng.random((n, 3)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    probs = (1 / (1 + np.exp(-logits * temperature))).astype(np.float32)
    return probs, labels


def test_fit_temperature_recovers_a_known_temperature():
    probs, labels = overconfident(temperature=2.5)
    t = fit_temperature(probs, labels)
    assert t.shape == (3,) and np.all(t == t[0])
    assert t[0] == pytest.approx(2.5, rel=0.1)
    calibrated = apply_temperature(probs, t)
    assert ece_per_label(calibrated, labels).mean() < ece_per_label(probs, labels).mean() / 2


def test_per_label_temperatures_differ_where_labels_differ():
    probs, labels = overconfident(temperature=2.5)
    # dividing label 2's logits by 0.5 doubles them: its true temperature is now 5
    probs[:, 2] = apply_temperature(probs[:, 2:], np.array([0.5]))[:, 0]
    t = fit_temperature(probs, labels, per_label=True)
    assert t[0] == pytest.approx(2.5, rel=0.1) and t[2] == pytest.approx(5.0, rel=0.1)


def test_temperature_one_changes_nothing():
    probs, _ = overconfident(n=10)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-6)


@pytest.mark.parametrize("calibration", ["global", "per_label"])
def test_run_with_temperature_scaling(make_cfg, tmp_path, calibration):
    from emotion_lab.inference import predict_probs
    from emotion_lab.models.saving import load_model
    from emotion_lab.rundir import load_arrays, read_json
    from emotion_lab.train import train

    metrics, objects = train(make_cfg(f"calibration={calibration}"))
    run = tmp_path / "run"
    temperatures = read_json(run / "temperatures.json")
    t = np.array(list(temperatures.values()))
    assert metrics["calibration"] == calibration and np.all(t > 0)
    if calibration == "global":
        assert np.all(t == t[0])
    raw = np.load(run / "val_probs_uncalibrated.npy")
    val_probs, val_labels = load_arrays(run, "val")
    np.testing.assert_allclose(val_probs, apply_temperature(raw, t), atol=1e-6)

    def bce(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return -np.mean(val_labels * np.log(p) + (1 - val_labels) * np.log(1 - p))

    assert bce(val_probs) <= bce(raw) + 1e-9  # fitted on validation: T=1 was a candidate
    assert "val/macro_ece_uncalibrated" in metrics and "test/macro_brier_uncalibrated" in metrics
    # whoever loads the run applies the same temperatures
    model, tokenizer, spec = load_model(run / "model")
    texts = objects["datamodule"].splits["test"].texts
    probs = predict_probs(model, tokenizer, texts, max_length=64,
                          temperatures=spec["temperatures"])
    np.testing.assert_allclose(probs, load_arrays(run, "test")[0], atol=1e-5)


def test_reliability_bins_known_answer():
    from emotion_lab.evaluation.calibration import reliability_bins

    probs = np.array([[0.05, 0.15], [0.95, 1.0]])
    labels = np.array([[0, 1], [1, 1]])
    bins = reliability_bins(probs, labels, n_bins=10)
    assert bins["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 joins the last bin
    assert bins["confidence"][9] == pytest.approx(0.975)
    assert bins["observed"][:2].tolist() == [0.0, 1.0]
    assert np.isnan(bins["observed"][5])


def test_reliability_diagram_is_written(tmp_path):
    from emotion_lab.evaluation.calibration import reliability_bins
    from emotion_lab.evaluation.figures import plot_reliability

    probs, labels = overconfident(n=500)
    after = apply_temperature(probs, fit_temperature(probs, labels))
    path = tmp_path / "reliability.png"
    plot_reliability({"before": reliability_bins(probs, labels),
                      "after": reliability_bins(after, labels)}, path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_joint_search_finds_the_temperature_a_fixed_threshold_needs():
    from emotion_lab.evaluation.thresholds import fixed, joint_search, temperature_grid

    # at a fixed threshold of 0.3 the temperature moves the decision boundary, so the grid
    # has something to find: over-confident scores (T=2.5) want a larger T
    probs, labels = overconfident(temperature=2.5)
    at_03 = lambda p, y: fixed(p, y, value=0.3)  # noqa: E731
    t, f1 = joint_search(probs, labels, at_03, temperature_grid())
    _, f1_at_1 = joint_search(probs, labels, at_03, np.array([1.0]))
    assert t > 1.0 and f1 > f1_at_1


def test_calibrate_joint_reports_both_and_keeps_the_winner():
    from emotion_lab.evaluation.thresholds import calibrate, fixed

    probs, labels = overconfident(temperature=2.5)
    at_03 = lambda p, y: fixed(p, y, value=0.3)  # noqa: E731
    t, info = calibrate("joint", probs, labels, at_03)
    assert {"val/macro_f1_bce_temperature", "val/macro_f1_search_temperature"} <= set(info)
    winner = max(info["val/macro_f1_bce_temperature"], info["val/macro_f1_search_temperature"])
    key = "search" if info["calibration/chosen"] == "joint_search" else "bce"
    assert info[f"val/macro_f1_{key}_temperature"] == winner
    assert t[0] == pytest.approx(info[f"calibration/{key}_temperature"])
    assert calibrate("none", probs, labels, at_03) == (None, {})


def test_run_with_joint_calibration(make_cfg, tmp_path):
    from emotion_lab.rundir import read_json
    from emotion_lab.train import train

    metrics, _ = train(make_cfg("calibration=joint"))
    assert metrics["calibration"] == "joint"
    assert metrics["calibration/chosen"] in {"joint_search", "bce_fit"}
    temperatures = read_json(tmp_path / "run" / "temperatures.json")
    chosen = "search" if metrics["calibration/chosen"] == "joint_search" else "bce"
    assert list(temperatures.values()) == pytest.approx(
        [metrics[f"calibration/{chosen}_temperature"]] * len(temperatures))
    texts = read_json(tmp_path / "run" / "test_texts.json")
    assert len(texts) == len(np.load(tmp_path / "run" / "test_labels.npy"))
