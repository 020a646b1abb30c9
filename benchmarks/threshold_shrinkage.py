"""Are per-label thresholds what costs test macro-F1? Each kept run scores 0.02-0.03 lower
on test than on validation, where its 28 thresholds are fitted. This pulls each label's
threshold towards the one global threshold, by how few validation positives it has:

    t_label = (n * t_own + k * t_global) / (n + k)     (k = 0: per-label; k -> inf: global)

and picks k by 5-fold cross-validation on validation alone (thresholds fitted on four folds,
macro-F1 of the fifth's out-of-fold predictions, 3 shuffles), one k for all runs (the best
mean) and one per run. Test is scored once, after the choice, next to the recorded policy.

    python benchmarks/threshold_shrinkage.py benchmarks/results/issue14_runs/original/full_seed42 \
        ... --out benchmarks/results/threshold_shrinkage.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from emotion_lab.evaluate import raw_arrays
from emotion_lab.evaluation.calibration import apply_temperature
from emotion_lab.evaluation.metrics import f1_scores
from emotion_lab.evaluation.thresholds import tune_global, tune_per_label
from emotion_lab.rundir import read_json

STRENGTHS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, float("inf"))


def shrunk(own: np.ndarray, common: np.ndarray, positives: np.ndarray, k: float) -> np.ndarray:
    """Each label's threshold pulled towards the global one by k pseudo-positives."""
    if np.isinf(k):
        return common
    return (positives * own + k * common) / np.maximum(positives + k, 1e-12)


def macro_f1(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> float:
    return f1_scores(probs, labels, thresholds)["macro_f1"]


def cross_validated(probs: np.ndarray, labels: np.ndarray, strengths: tuple[float, ...],
                    folds: int = 5, shuffles: int = 3) -> dict[float, float]:
    """Out-of-fold validation macro-F1 at each strength, averaged over shuffles."""
    scores: dict[float, list[float]] = {k: [] for k in strengths}
    for shuffle in range(shuffles):
        order = np.random.default_rng(shuffle).permutation(len(labels))
        predicted = {k: np.zeros(labels.shape) for k in strengths}
        for fold in range(folds):
            held = order[fold::folds]
            fit = np.setdiff1d(order, held)
            own = tune_per_label(probs[fit], labels[fit])
            common = tune_global(probs[fit], labels[fit])
            for k in strengths:
                thresholds = shrunk(own, common, labels[fit].sum(axis=0), k)
                predicted[k][held] = probs[held] >= thresholds
        for k in strengths:  # 0/1 predictions: any threshold in (0, 1) reads them back
            scores[k].append(macro_f1(predicted[k], labels, np.full(labels.shape[1], 0.5)))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def calibrated(run: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's probabilities with the run's own fitted temperatures, and its labels."""
    probs, labels = raw_arrays(run, split)
    temperatures = run / "temperatures.json"
    if temperatures.is_file():
        probs = apply_temperature(probs, np.array(list(read_json(temperatures).values())))
    return probs, labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories with saved arrays")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    missing = [str(r) for r in args.runs if not (r / "val_labels.npy").is_file()]
    if missing:
        print(f"error: no saved validation arrays in {', '.join(missing)}; give run "
              f"directories written by python -m emotion_lab.train", file=sys.stderr)
        return 2
    arrays = {r: (calibrated(r, "val"), calibrated(r, "test")) for r in args.runs}
    cv = {r: cross_validated(*arrays[r][0], STRENGTHS)
          for r in tqdm(args.runs, desc="cross-validating on validation")}
    mean_cv = {k: float(np.mean([cv[r][k] for r in args.runs])) for k in STRENGTHS}
    common_k = max(STRENGTHS, key=lambda k: (mean_cv[k], -k))  # smallest k on ties
    rows = []
    for run in args.runs:
        (val_probs, val_labels), (test_probs, test_labels) = arrays[run]
        own, common = tune_per_label(val_probs, val_labels), tune_global(val_probs, val_labels)
        positives = val_labels.sum(axis=0)
        own_k = max(STRENGTHS, key=lambda k: (cv[run][k], -k))
        rows.append({
            "run": str(run),
            "recorded_test_macro_f1": read_json(run / "metrics.json")["test/macro_f1"],
            "cv_val_macro_f1": {str(k): v for k, v in cv[run].items()}, "own_k": own_k,
            "test_macro_f1": {
                "per_label": macro_f1(test_probs, test_labels, own),
                "global": macro_f1(test_probs, test_labels, common),
                "shrunk_common_k": macro_f1(test_probs, test_labels,
                                            shrunk(own, common, positives, common_k)),
                "shrunk_own_k": macro_f1(test_probs, test_labels,
                                         shrunk(own, common, positives, own_k))}})
    result = {"strengths": [str(k) for k in STRENGTHS], "folds": 5, "shuffles": 3,
              "mean_cv_val_macro_f1": {str(k): v for k, v in mean_cv.items()},
              "common_k": common_k, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    for row in rows:
        scores = " ".join(f"{name} {v:.4f}" for name, v in row["test_macro_f1"].items())
        print(f"{row['run']}: own k {row['own_k']:g}; test {scores}")
    print(f"common k (best mean cross-validated validation macro-F1): {common_k:g}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
