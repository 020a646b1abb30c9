"""Validation macro-F1 (thresholds fitted on validation) after each epoch of finished runs,
from the CSV logger's metrics.csv in each run directory: how many epochs a recipe needs.

    python benchmarks/epoch_curves.py outputs/issue14/full outputs/issue14/lora \
        --out benchmarks/results/issue14_epoch_curves.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from emotion_lab.rundir import find_runs, read_json


def curve(run: Path) -> list[dict[str, float]]:
    logs = sorted(run.glob("csv/**/metrics.csv")) or sorted(run.glob("**/metrics.csv"))
    if not logs:
        return []
    table = pd.read_csv(logs[0])
    epochs = table[table["val/macro_f1"].notna() & table["epoch"].notna()]
    return [{"epoch": int(row["epoch"]) + 1, "val_macro_f1": float(row["val/macro_f1"]),
             "val_macro_pr_auc": float(row.get("val/macro_pr_auc", float("nan")))}
            for _, row in epochs.iterrows()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for run in find_runs(args.paths):
        metrics = read_json(run / "metrics.json")
        points = curve(run)
        if points:
            rows.append({"run": str(run), "adapter": metrics.get("adapter"),
                         "seed": metrics.get("seed"), "curve": points})
            print(f"{run}: " + ", ".join(f"{p['epoch']}: {p['val_macro_f1']:.4f}"
                                         for p in points))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
