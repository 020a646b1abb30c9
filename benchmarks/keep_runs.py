"""Copy what the report reads from finished runs into the repository (no weights, no
checkpoints), so that a results table re-derives from committed files:

    python benchmarks/keep_runs.py outputs/issue14/full outputs/issue14/lora \
        --into benchmarks/results/issue14_runs
    python -m emotion_lab.report benchmarks/results/issue14_runs

Each run lands in <into>/<taxonomy>/<adapter>_seed<seed>/ (an ensemble: <adapter>/). Kept:
metrics, per-label rows, thresholds, temperatures, label map, config, data report, the test
arrays the intervals and figures need, and the raw validation arrays that
`python -m emotion_lab.evaluate` and benchmarks/seed_ensemble.py re-fit on (~2 MB a run).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from emotion_lab.rundir import find_runs, read_json

KEEP = ("metrics.json", "per_label.csv", "thresholds.json", "temperatures.json",
        "label_map.json", "config.yaml", "data_report.json", "test_probs.npy",
        "test_labels.npy", "test_probs_uncalibrated.npy", "val_probs_uncalibrated.npy",
        "val_probs.npy", "val_labels.npy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--into", type=Path, required=True)
    args = parser.parse_args()
    kept: dict[Path, Path] = {}  # destination -> run, all checked before anything is copied
    for run in find_runs(args.paths):
        if "evaluations" in run.parts:
            continue  # variants re-derive from their run with python -m emotion_lab.evaluate
        metrics = read_json(run / "metrics.json")
        config = run / "config.yaml"
        seed = None
        if config.is_file():
            from omegaconf import OmegaConf

            seed = OmegaConf.load(config).get("seed")
        name = metrics["adapter"].replace(" ", "") + ("" if seed is None else f"_seed{seed}")
        dest = args.into / str(metrics.get("taxonomy") or "original") / name
        if dest in kept:  # one would overwrite the other
            print(f"error: {kept[dest]} and {run} would both be kept as {dest}; keep runs "
                  "that differ by more than seed and adapter into separate --into folders.",
                  file=sys.stderr)
            return 2
        kept[dest] = run
    for dest, run in kept.items():
        dest.mkdir(parents=True, exist_ok=True)
        raw_val = (run / "val_probs_uncalibrated.npy").is_file()
        for file in KEEP:
            if file == "val_probs.npy" and raw_val:
                continue  # calibrated validation = raw / temperature; the raw one is kept
            if (run / file).is_file():
                shutil.copyfile(run / file, dest / file)
        print(f"{run} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
