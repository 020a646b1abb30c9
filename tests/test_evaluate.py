"""Post-hoc evaluation of a finished run: new thresholds and calibrations from the saved
validation arrays, by the function training uses, single runs and Hydra multiruns."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import compose_config, compose_train_cfg

from emotion_lab.evaluate import GateError, evaluate, passes_gate
from emotion_lab.evaluation.metrics import evaluate as score
from emotion_lab.rundir import RunDirError, read_json
from emotion_lab.train import train


@pytest.fixture(scope="module")
def run_dir(goemotions_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    train(compose_train_cfg(goemotions_dir, out, "calibration=global"))
    return out


def variant(run_dir, tmp_path, *overrides):
    cfg = compose_config(f"run_dir={run_dir}", *overrides, config_name="evaluate")
    return evaluate(cfg, tmp_path / "variant")


def test_the_run_own_settings_reproduce_its_evaluation(run_dir, tmp_path):
    trained = read_json(run_dir / "metrics.json")
    again = variant(run_dir, tmp_path, "threshold=per_label", "calibration=global")
    for key in ("val/macro_f1", "test/macro_f1", "test/micro_f1", "test/macro_pr_auc",
                "test/ekman/macro_f1", "test/macro_ece", "test/macro_ece_uncalibrated"):
        assert again[key] == pytest.approx(trained[key], abs=1e-6), key
    assert read_json(tmp_path / "variant" / "temperatures.json") == pytest.approx(
        read_json(run_dir / "temperatures.json"))
    assert again["adapter"] == trained["adapter"] and again["evaluated_from"] == str(run_dir)


def test_a_fixed_threshold_on_the_raw_probabilities(run_dir, tmp_path):
    metrics = variant(run_dir, tmp_path, "threshold=fixed", "calibration=none")
    raw = np.load(run_dir / "test_probs_uncalibrated.npy")
    labels = np.load(run_dir / "test_labels.npy")
    names = list(read_json(run_dir / "label_map.json").values())
    expected, _ = score(raw, labels, np.full(len(names), 0.5), names, "test")
    assert metrics["test/macro_f1"] == pytest.approx(expected["test/macro_f1"])
    assert metrics["calibration"] == "none" and metrics["threshold_policy"] == "fixed"
    out = tmp_path / "variant"
    assert set(read_json(out / "thresholds.json").values()) == {0.5}
    for name in ("per_label.csv", "label_map.json", "test_probs.npy", "data_report.json"):
        assert (out / name).is_file(), name


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(RunDirError, match="no metrics.json"):
        variant(tmp_path, tmp_path)


@pytest.mark.slow
def test_multirun_writes_one_variant_per_setting_and_the_report_reads_them(run_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "emotion_lab.evaluate", "-m",
                           f"run_dir={run_dir}", "threshold=fixed,global"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    variants = sorted(p.name for p in (run_dir / "evaluations").iterdir() if p.is_dir())
    assert variants == ["fixed_none", "global_none"]
    for name in variants:
        metrics = json.loads((run_dir / "evaluations" / name / "metrics.json").read_text())
        assert metrics["threshold_policy"] == name.split("_")[0]
    report = subprocess.run([sys.executable, "-m", "emotion_lab.report", f"runs={run_dir}",
                             f"out={tmp_path / 'report'}"],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = (tmp_path / "report" / "report.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3  # header, the run, its two variants
    bad = subprocess.run([sys.executable, "-m", "emotion_lab.evaluate",
                          f"run_dir={tmp_path / 'nowhere'}"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "nowhere: no such directory" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_the_gate_fails_below_its_minimum_and_names_unknown_metrics(run_dir):
    value = read_json(run_dir / "metrics.json")["test/macro_f1"]
    assert passes_gate({"test/macro_f1": value}, "test/macro_f1", None)
    assert passes_gate({"test/macro_f1": value}, "test/macro_f1", value)
    assert not passes_gate({"test/macro_f1": value}, "test/macro_f1", value + 0.01)
    with pytest.raises(GateError, match="test/macro_f1"):
        passes_gate({"test/macro_f1": value, "val/macro_f1": value}, "test/macro_f", 0.1)
    command = [sys.executable, "-m", "emotion_lab.evaluate", f"run_dir={run_dir}",
               "threshold=global", "calibration=joint"]
    failing = subprocess.run(command + [f"gate.min={value + 0.2}"], capture_output=True,
                             text=True, timeout=300)
    assert failing.returncode == 1 and "gate: test/macro_f1" in failing.stdout + failing.stderr
    passing = subprocess.run(command + ["gate.min=0.0"], capture_output=True, text=True,
                             timeout=300)
    assert passing.returncode == 0, passing.stderr[-2000:]
    assert (run_dir / "evaluations" / "global_joint" / "metrics.json").is_file()
