"""An ensemble of finished runs (seeds of one config, or adapters), from their saved arrays:
the mean of their raw validation and test probabilities, then temperature and per-label
thresholds fitted on validation only by `evaluate_run`, as training does. Written as a run
directory the report reads (no model: the members are the model, at n times the inference
cost).

    python benchmarks/seed_ensemble.py outputs/issue14/full/0 outputs/issue14/full/1 \
        outputs/issue14/full/2 --out outputs/issue14/full_ensemble
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emotion_lab.evaluate import raw_arrays
from emotion_lab.evaluation.run_evaluation import evaluate_run
from emotion_lab.evaluation.thresholds import tune_per_label
from emotion_lab.rundir import read_json, write_evaluation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calibration", default="global", help="none | global | per_label")
    args = parser.parse_args()
    facts = [read_json(r / "metrics.json") for r in args.runs]
    labels = list(read_json(args.runs[0] / "label_map.json").values())
    split_arrays = {}
    for split in ("val", "test"):
        members = [raw_arrays(r, split) for r in args.runs]
        if any(not np.array_equal(m[1], members[0][1]) for m in members[1:]):
            print(f"error: the runs' {split} labels differ: not the same {split} set",
                  file=sys.stderr)
            return 2
        split_arrays[split] = (np.mean([m[0] for m in members], axis=0), members[0][1])
    evaluation = evaluate_run(*split_arrays["val"], *split_arrays["test"], labels,
                              threshold_policy=tune_per_label, calibration=args.calibration,
                              taxonomies=["ekman", "sentiment"])
    first = facts[0]
    metrics = {
        "backbone": first["backbone"], "adapter": f"{first['adapter']} x{len(args.runs)}",
        "threshold_policy": "per_label", "calibration": evaluation.calibration,
        "taxonomy": first.get("taxonomy"), "ensemble_of": [str(r) for r in args.runs],
        "params/trainable": sum(f["params/trainable"] for f in facts),
        "params/total": sum(f["params/total"] for f in facts),
        "params/trainable_share": first["params/trainable_share"],
        "time/fit_seconds": sum(f["time/fit_seconds"] for f in facts),
        **evaluation.metrics}
    args.out.mkdir(parents=True, exist_ok=True)
    write_evaluation(args.out, metrics, evaluation, labels)
    data_report = args.runs[0] / "data_report.json"
    if data_report.is_file():
        (args.out / "data_report.json").write_bytes(data_report.read_bytes())
    print(f"ensemble of {len(args.runs)}: val macro-F1 {metrics['val/macro_f1']:.4f}, test "
          f"macro-F1 {metrics['test/macro_f1']:.4f} (members: " + ", ".join(
              f"{f['test/macro_f1']:.4f}" for f in facts) + f") -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
