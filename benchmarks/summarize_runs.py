"""Collect the metrics.json of every run below some directories into one JSON and a
Markdown table (a stopgap until the report face exists).

    python benchmarks/summarize_runs.py outputs/issue2/adapters_1epoch \
        --out benchmarks/results/issue2_adapters_1epoch.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

COLUMNS = [("adapter", "{}"), ("taxonomy", "{}"), ("threshold_policy", "{}"),
           ("test/macro_f1", "{:.4f}"),
           ("test/micro_f1", "{:.4f}"), ("test/macro_f1_at_0.3", "{:.4f}"),
           ("test/macro_pr_auc", "{:.4f}"), ("val/macro_f1", "{:.4f}"),
           ("params/trainable_share", "{:.2%}"), ("time/fit_seconds", "{:.0f}"),
           ("time/train_samples_per_second", "{:.1f}"),
           ("test/ekman/macro_f1", "{:.4f}"), ("test/sentiment/macro_f1", "{:.4f}")]


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    files = sorted(p for d in args.dirs for p in d.rglob("metrics.json"))
    if not files:
        print(f"no metrics.json below {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 1
    runs = [{"run_dir": str(p.parent), **json.loads(p.read_text())} for p in files]
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(),
               "threads": torch.get_num_threads(), "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "runs": runs}, indent=2) + "\n")
    print("| " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for run in runs:
        print("| " + " | ".join("-" if run.get(name) is None else fmt.format(run[name])
                                for name, fmt in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
