"""Test macro-F1 against training time that does not mislead: every row's time is the same
kind of figure, taken on one machine with nothing else running.

A run's own wall time says how busy the machine was as much as what the recipe costs (the
issue-14 LoRA runs shared their cores and look slower than full fine-tuning, while LoRA
trains faster per sample alone). So each row's time here is its recipe's training samples
(the runs' `train/samples_seen`) divided by a speed measured alone on this machine: the
`time/train_samples_per_second` of a short run of the same settings that ran alone, or the
rows' own runs where they ran alone (SPEED `own`). The feature pass of a frozen backbone is
added where the runs recorded one. Validation passes are left out of every row alike.

    python benchmarks/cost_figure.py \
        --row "full fine-tuning" benchmarks/results/issue14_runs/original/full_seed42,... \
              benchmarks/results/issue30_speed/full \
        --row "LoRA r=4, every layer" benchmarks/results/issue30_runs/lora_small own \
        --out benchmarks/results/issue30_cost

Writes <out>.json (every row: its runs, scores, samples, speed and where the speed came from)
and <out>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from summarize_runs import cpu_name  # noqa: E402

from emotion_lab.rundir import RunDirError, find_runs, read_metrics  # noqa: E402


def runs_of(spec: str) -> list[Path]:
    return find_runs([Path(p) for p in spec.split(",")])


def samples_per_second(metrics: dict, path: Path) -> float:
    speed = metrics.get("time/train_samples_per_second")
    if not speed:  # absent (a run older than the figure) or null (a run that trained 0 steps)
        raise SystemExit(f"cost_figure: {path} records no time/train_samples_per_second; time "
                         "a short run of its settings alone and pass that run as SPEED.")
    return speed


def speed_of(spec: str, runs: dict[Path, dict]) -> tuple[float, str]:
    """Samples a second measured alone, and where that figure comes from."""
    if spec == "own":
        return statistics.mean(samples_per_second(m, p) for p, m in runs.items()), "own runs"
    speeds = [samples_per_second(read_metrics(p), p) for p in runs_of(spec)]
    return statistics.mean(speeds), spec


def row(label: str, runs_spec: str, speed_spec: str) -> dict:
    paths = runs_of(runs_spec)
    by_path = {p: read_metrics(p) for p in paths}
    runs = list(by_path.values())
    samples = {m["train/samples_seen"] for m in runs}
    if len(samples) != 1:
        raise SystemExit(f"{label}: its runs saw different numbers of training samples "
                         f"({sorted(samples)}); a row is one recipe over seeds.")
    speed, source = speed_of(speed_spec, by_path)
    features = statistics.mean(m.get("time/feature_seconds") or 0.0 for m in runs)
    scores = [m["test/macro_f1"] for m in runs]
    return {"label": label, "runs": [str(p) for p in paths], "seeds": len(runs),
            "test_macro_f1_mean": statistics.mean(scores),
            "test_macro_f1_sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "trainable_share": runs[0]["params/trainable_share"],
            "samples_seen": samples.pop(), "samples_per_second_alone": speed,
            "speed_from": source, "feature_seconds": features,
            "seconds_alone": runs[0]["train/samples_seen"] / speed + features,
            "seconds_as_recorded": statistics.mean(m["time/fit_seconds"] for m in runs)}


def draw(rows: list[dict], machine: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = max(r["test_macro_f1_mean"] for r in rows)  # its label above, the others' below
    for r in rows:
        ax.errorbar(r["seconds_alone"] / 60, r["test_macro_f1_mean"], yerr=r["test_macro_f1_sd"],
                    fmt="o", capsize=3)
        ax.annotate(f"{r['label']}\n{r['trainable_share']:.2%} trainable",
                    (r["seconds_alone"] / 60, r["test_macro_f1_mean"]),
                    textcoords="offset points", fontsize=8,
                    xytext=(8, 8 if r["test_macro_f1_mean"] == top else -30))
    ax.set_xlabel("training minutes, alone: samples seen / samples a second measured alone")
    ax.set_ylabel("test macro-F1 (mean ± sd over seeds)")
    ax.set_title(f"Test macro-F1 against training time alone\n{machine}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.6)  # rows sit close in time: room for their labels, not for an empty 0
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", nargs=3, action="append", required=True,
                        metavar=("LABEL", "RUNS", "SPEED"),
                        help="RUNS: run directories (comma-separated, or folders holding "
                             "them); SPEED: runs of the same settings timed alone, or `own`")
    parser.add_argument("--out", type=Path, required=True, help="path without suffix")
    args = parser.parse_args()
    try:
        rows = [row(*spec) for spec in args.row]
    except (RunDirError, KeyError) as error:
        raise SystemExit(f"cost_figure: {error}") from None
    machine = (f"{cpu_name()}, {os.cpu_count()} cores, "
               f"{'native' if torch.ops.mkldnn._is_mkldnn_bf16_supported() else 'no native'}"
               " bf16")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows},
                                                        indent=1) + "\n")
    draw(rows, machine, args.out.with_suffix(".png"))
    for r in rows:
        print(f"{r['label']}: {r['test_macro_f1_mean']:.4f} ± {r['test_macro_f1_sd']:.4f}, "
              f"{r['seconds_alone']:,.0f} s alone ({r['samples_per_second_alone']:.1f} "
              f"samples/s, from {r['speed_from']})")


if __name__ == "__main__":
    main()
