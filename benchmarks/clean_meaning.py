"""Cleaning by meaning on the packaged GoEmotions: `prepare` with data.clean.label_issues and
data.clean.outliers on; how many training examples each flags and removes (and their share
of the split), how long each step takes, on which CPU.

    python benchmarks/clean_meaning.py                               # defaults of conf/
    python benchmarks/clean_meaning.py data.clean.label_issues.max_share=null

Any prepare override works. The prepared data (with flagged.csv and flagged_per_label.png)
goes to outputs/clean_meaning; one line per run is appended to
benchmarks/results/clean_meaning.jsonl. The first run computes the MiniLM embeddings
(cached under outputs/cache); a rerun reads them back.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from hydra import compose, initialize_config_dir

from emotion_lab.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ["data.clean.label_issues.enabled=true", "data.clean.outliers.enabled=true",
            "out_dir=outputs/clean_meaning"]


def cpu() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import cleanlab

    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cleanlab": cleanlab.__version__,
            "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def main(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=DEFAULTS + overrides)
    machine = cpu()
    start = time.perf_counter()
    report = prepare(cfg)
    seconds = time.perf_counter() - start
    train = report["splits"]["train"]
    review = pd.read_csv(Path(cfg.out_dir) / "flagged.csv", keep_default_na=False)
    removed = train["removed"]["label_issues"] + train["removed"]["outliers"]
    per_label = review.assign(label=review["given_labels"].str.split(", ")).explode("label")
    result = {
        "command": " ".join(["python benchmarks/clean_meaning.py", *overrides]),
        "overrides": DEFAULTS + overrides,
        "rules": {k: report["rules"][k] for k in ("label_issues", "outliers")},
        "train_read": train["read"], "train_kept": train["kept"],
        "found": {k: train["found"][k] for k in ("label_issues", "outliers")},
        "found_share": {k: round(train["found"][k] / train["read"], 4)
                        for k in ("label_issues", "outliers")},
        "removed": {k: train["removed"][k] for k in ("label_issues", "outliers")},
        "removed_share": round(removed / train["read"], 4),
        "flagged_rows": len(review), "flagged_per_label":
            per_label.groupby("label").size().sort_values(ascending=False).to_dict(),
        "steps_seconds": {k: v for k, v in train["by_meaning"].items()
                          if k != "read_per_label"},
        "prepare_seconds": round(seconds, 1),
        "val_test_unchanged": all(report["splits"][s]["read"] == report["splits"][s]["kept"]
                                  for s in ("val", "test")),
        "examples": review.head(5)[["text", "given_labels", "suggested_labels", "reason",
                                    "label_quality"]].to_dict("records"),
        **machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    result["embeddings"] = "read from the cache" if train["by_meaning"]["embed_seconds"] < 30 \
        else "computed (cold cache)"
    with (ROOT / "benchmarks" / "results" / "clean_meaning.jsonl").open("a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps({k: result[k] for k in ("found", "removed", "removed_share",
                                             "steps_seconds", "prepare_seconds")}))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    main(sys.argv[1:])
