"""Issue 28's targets on the synthetic task (data=synthetic), one invocation: for a tiny random
Llama, GPT-2 and T5 (emotion_lab/testing/tiny_backbones.py), the classifier head on the same
backbone (the reference) and model=generative with yes/no label scores (the default) and
with first-label scores; all trained fully for the same epochs and learning rate.

    python benchmarks/generative_synthetic.py            # ~15-25 min on 2 CPU cores, alone

Per run: test macro-F1 of the label scores under per-label thresholds fitted on validation;
for generative runs, the generated answers' macro-F1 and unparseable rate (constrained
decoding, the default), and the recall of true labels by their position in the target
(labels are written in label order: the 1st, 2nd and 3rd true label of a text with several)
at the run's thresholds. Writes benchmarks/results/generative_synthetic.json and a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from summarize_runs import cpu_name  # noqa: E402

BACKBONES = {"llama": "smollm2_135m", "gpt2": "gpt2", "t5": "t5_small"}
KINDS = {"classifier head": ["model=default"],
         "generative, yes/no scores": ["model=generative"],
         "generative, first-label scores": ["model=generative",
                                            "model.scoring.method=first_label"]}
RUN_NAMES = {"classifier head": "classifier", "generative, yes/no scores": "yes_no",
             "generative, first-label scores": "first_label"}


def position_recall(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray,
                    ) -> dict[str, float | None]:
    """Recall of the p-th true label (in label order, as targets write them) of texts with
    two or more labels, at the thresholds."""
    hits: dict[int, list[bool]] = {1: [], 2: [], 3: []}
    for p, y in zip(probs, labels, strict=True):
        true = np.flatnonzero(y)
        if len(true) < 2:
            continue
        for position, k in enumerate(true[:3], 1):
            hits[position].append(bool(p[k] >= thresholds[k]))
    return {str(k): (float(np.mean(v)) if v else None) for k, v in hits.items()}


def write(args: argparse.Namespace, rows: list[dict]) -> list[dict]:
    """The JSON so far (after every run: an interrupted invocation keeps what it measured);
    with --append, after the rows the file held when the invocation started."""
    import torch

    if not hasattr(args, "earlier"):
        path = Path(args.out)
        args.earlier = json.loads(path.read_text())["rows"] \
            if args.append and path.exists() else []
    out = {"machine": {"cpu": cpu_name(), "cores": 2, "torch": torch.__version__,
                       "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())},
           "settings": {"epochs": args.epochs, "lr": args.lr, "adapter": "full",
                        "data": "synthetic (2,400 train, 300 val, 300 test)"},
           "rows": args.earlier + rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return out["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--families", nargs="+", default=list(BACKBONES))
    parser.add_argument("--kinds", nargs="+", default=list(RUN_NAMES.values()),
                        choices=list(RUN_NAMES.values()))
    parser.add_argument("--append", action="store_true",
                        help="add the rows to --out's (a run measured in several invocations)")
    parser.add_argument("--out_dir", default=str(ROOT / "outputs/issue28"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/generative_synthetic.json"))
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    rows = []
    for family in args.families:
        folder = out_dir / f"tiny_{family}"
        if not (folder / "config.json").exists():
            subprocess.run([sys.executable, "-m", "emotion_lab.testing.tiny_backbones", family,
                            str(folder)], check=True)
        for kind, overrides in KINDS.items():
            if RUN_NAMES[kind] not in args.kinds:
                continue
            run = out_dir / f"{family}_{RUN_NAMES[kind]}"
            command = [sys.executable, "-m", "emotion_lab.train", "data=synthetic",
                       f"backbone={BACKBONES[family]}", f"backbone.model={folder}",
                       "adapter=full", f"backbone.lr.full={args.lr}",
                       f"trainer.max_epochs={args.epochs}", "logger=none",
                       "model.generation.max_new_tokens=16" if "generative" in kind else "seed=0",
                       "callbacks.progress_bar.refresh_rate=0", *overrides,
                       f"hydra.run.dir={run}"]
            print(" ".join(command[1:]), flush=True)
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            metrics = json.loads((run / "metrics.json").read_text())
            thresholds_file = json.loads((run / "thresholds.json").read_text())
            labels = json.loads((run / "model" / "emotion_lab.json").read_text())["labels"]
            thresholds = np.array([thresholds_file["thresholds"][k] for k in labels]) \
                if "thresholds" in thresholds_file else np.array([thresholds_file[k]
                                                                   for k in labels])
            probs, true = np.load(run / "test_probs.npy"), np.load(run / "test_labels.npy")
            row = {"backbone": family, "kind": kind, "seconds": round(seconds, 1),
                   "test_macro_f1": metrics["test/macro_f1"],
                   "position_recall": position_recall(probs, true, thresholds),
                   "command": " ".join(command[1:])}
            if "generative" in kind:
                row["generated_macro_f1"] = metrics.get("test/generated/macro_f1")
                row["unparseable_rate"] = metrics.get("test/generated/unparseable_rate")
            rows.append(row)
            print(json.dumps(row), flush=True)
            write(args, rows)
    rows = write(args, rows)
    print("| backbone | run | test macro-F1 | answers macro-F1 | unparseable | recall 1st/2nd/3rd "
          "| s |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        rec = "/".join("-" if v is None else f"{v:.2f}" for v in r["position_recall"].values())
        gen = r.get("generated_macro_f1")
        unp = r.get("unparseable_rate")
        print(f"| {r['backbone']} | {r['kind']} | {r['test_macro_f1']:.3f} | "
              f"{'-' if gen is None else f'{gen:.3f}'} | {'-' if unp is None else f'{unp:.3f}'} "
              f"| {rec} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
