"""benchmarks/threshold_shrinkage.py: thresholds pulled towards the global one, k chosen by
cross-validation on validation only; test scored once, beside the recorded policy."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from emotion_lab.evaluation.metrics import f1_scores
from emotion_lab.evaluation.thresholds import tune_global, tune_per_label

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks/threshold_shrinkage.py"


def load_script():
    spec = importlib.util.spec_from_file_location("threshold_shrinkage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def arrays(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Three labels: two common, one rare (about 1%), probabilities that rank them well."""
    labels = (rng.random((n, 3)) < [0.3, 0.2, 0.01]).astype(np.int64)
    probs = np.clip(0.35 * labels + rng.random((n, 3)) * 0.6, 0.001, 0.999).astype(np.float32)
    return probs, labels


def fake_run(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    for split in ("val", "test"):
        probs, labels = arrays(rng, 400)
        np.save(path / f"{split}_probs_uncalibrated.npy", probs)
        np.save(path / f"{split}_labels.npy", labels)
        if split == "val":
            recorded_thresholds = tune_per_label(probs, labels)
    (path / "label_map.json").write_text(json.dumps({"0": "a", "1": "b", "2": "rare"}))
    (path / "metrics.json").write_text(json.dumps(
        {"test/macro_f1": f1_scores(probs, labels, recorded_thresholds)["macro_f1"]}))
    return path


def test_strength_zero_is_per_label_and_infinite_is_global_and_between_moves_rare_labels_most():
    shrunk = load_script().shrunk
    own, common = np.array([0.2, 0.6, 0.9]), np.full(3, 0.4)
    positives = np.array([1000.0, 100.0, 2.0])
    assert np.allclose(shrunk(own, common, positives, 0.0), own)
    assert np.allclose(shrunk(own, common, positives, float("inf")), common)
    moved = np.abs(shrunk(own, common, positives, 10.0) - own) / np.abs(common - own)
    assert moved[0] < moved[1] < moved[2] < 1  # fewer positives: nearer the global threshold


def test_the_script_scores_the_recorded_policy_and_picks_k_on_validation(tmp_path):
    runs = [fake_run(tmp_path / f"run{seed}", seed) for seed in (0, 1)]
    out = tmp_path / "shrinkage.json"
    done = subprocess.run([sys.executable, str(SCRIPT), *map(str, runs), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for row, run in zip(result["runs"], runs, strict=True):
        # no temperatures.json: the per-label policy on the raw arrays is the recorded one
        assert abs(row["test_macro_f1"]["per_label"] - row["recorded_test_macro_f1"]) < 1e-9
        val_probs, val_labels = np.load(run / "val_probs_uncalibrated.npy"), \
            np.load(run / "val_labels.npy")
        test_probs, test_labels = np.load(run / "test_probs_uncalibrated.npy"), \
            np.load(run / "test_labels.npy")
        common = tune_global(val_probs, val_labels)
        assert abs(row["test_macro_f1"]["global"]
                   - f1_scores(test_probs, test_labels, common)["macro_f1"]) < 1e-9
        cv = row["cv_val_macro_f1"]
        assert cv[str(row["own_k"])] == max(cv.values())
    mean = result["mean_cv_val_macro_f1"]
    assert mean[str(result["common_k"])] == max(mean.values())


def test_a_folder_without_saved_arrays_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "empty"),
                           "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert "empty" in done.stderr and "emotion_lab.train" in done.stderr
