"""Inference speed of a trained run, in one invocation on one machine: emotion_lab's
predictor against transformers' text-classification pipeline on the same (exported) model,
and the ONNX and int8 exports.

    python benchmarks/predict_speed.py --run outputs/issue6/minilm_cls

The run needs HF's own head (model.head.pooling=cls), so that the pipeline can load its
export. Texts: the run's test split (test_texts.json, 5,427 texts for GoEmotions).
Rows:
  - reference: PyTorch fp32, one text at a time (no padding): the scores others must match.
  - emotion_lab predictor (precision=auto: bf16 where native), length-sorted batches of 64,
    LoRA merged into the backbone; for a LoRA run also without the merge.
  - pipeline, batch_size=1 (its default) and batch_size=32 (its documented batching).
  - emotion_lab predictor on the ONNX export, and on its dynamic int8 quantization.
Per row: texts/s over all texts (after an untimed warm-up pass over them), the share of
texts whose predicted label set equals the reference's, test macro-F1 at the run's
thresholds, and single-text latency p50/p95 over 200 texts.
Writes benchmarks/results/predict_speed.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from summarize_runs import cpu_name  # noqa: E402
from train_speed import matmul_peak, model_facts, training_flops  # noqa: E402

from emotion_lab.evaluation.metrics import f1_scores  # noqa: E402
from emotion_lab.export import export_hf, export_onnx, load_onnx  # noqa: E402
from emotion_lab.inference.predictor import EmotionClassifier  # noqa: E402
from emotion_lab.models.saving import load_model  # noqa: E402
from emotion_lab.rundir import read_json  # noqa: E402

Scorer = Callable[[list[str]], np.ndarray]


def pipeline_scorer(pipe, labels: list[str], batch_size: int) -> Scorer:
    def score(texts: list[str]) -> np.ndarray:
        rows = pipe(texts, batch_size=batch_size, truncation=True, max_length=128)
        return np.array([[{d["label"]: d["score"] for d in row}[name] for name in labels]
                         for row in rows])
    return score


def measure(name: str, score: Scorer, texts: list[str], labels: np.ndarray,
            thresholds: np.ndarray, reference: np.ndarray | None,
            latency_texts: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    # warm-up: one untimed pass over every text. oneDNN builds kernels per new input shape,
    # and a first pass over the 5,427 texts ran ~25% slower than the second.
    score(texts)
    start = time.perf_counter()
    probs = score(texts)
    seconds = time.perf_counter() - start
    latencies = []
    for text in latency_texts:
        t0 = time.perf_counter()
        score([text])
        latencies.append(1000 * (time.perf_counter() - t0))
    preds = probs >= thresholds
    row = {"row": name, "texts_per_second": len(texts) / seconds, "seconds": seconds,
           "latency_ms_p50": float(np.percentile(latencies, 50)),
           "latency_ms_p95": float(np.percentile(latencies, 95)),
           "test_macro_f1": f1_scores(probs, labels, thresholds)["macro_f1"]}
    if reference is not None:
        row["same_label_sets"] = float((preds == (reference >= thresholds)).all(axis=1).mean())
        row["max_abs_diff_vs_reference"] = float(np.abs(probs - reference).max())
    print(f"{name:<32} {row['texts_per_second']:8.1f} texts/s  p50 {row['latency_ms_p50']:6.1f}"
          f" ms  p95 {row['latency_ms_p95']:6.1f} ms  macro-F1 {row['test_macro_f1']:.4f}"
          f"  same sets {row.get('same_label_sets', 1):.4f}", flush=True)
    return row, probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run directory with HF's head")
    parser.add_argument("--latency-texts", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/predict_speed.json"))
    args = parser.parse_args()
    run = Path(args.run)
    texts = read_json(run / "test_texts.json")
    labels = np.load(run / "test_labels.npy")
    rng = np.random.default_rng(0)
    latency_texts = [texts[i] for i in rng.choice(len(texts), args.latency_texts, replace=False)]

    ours = EmotionClassifier.from_run(run, precision="auto")  # bf16 where native
    thresholds = ours.thresholds
    # model FLOPs of one pass over the real (unpadded) tokens: forward only, as
    # train_speed.py counts a frozen backbone; padding is work the model did not need
    lengths = [len(ids) for ids in ours.tokenizer(texts, truncation=True,
                                                  max_length=ours.max_length)["input_ids"]]
    flops = training_flops(model_facts(ours.model), lengths, "frozen_head")
    peak = matmul_peak(torch.float32)
    fp32 = EmotionClassifier.from_run(run, precision="fp32", batch_size=1)
    rows = []
    row, reference = measure("reference: PyTorch fp32, batch 1", fp32.scores, texts, labels,
                             thresholds, None, latency_texts)
    rows.append(row)
    autocast = "bf16" if ours.autocast is not None else "fp32"
    rows.append(measure(f"emotion_lab predictor ({autocast})", ours.scores, texts, labels,
                        thresholds, reference, latency_texts)[0])
    if read_json(run / "model" / "emotion_lab.json")["adapter"] == "lora":
        model, tokenizer, _ = load_model(run / "model")  # PEFT model, LoRA not merged
        unmerged = EmotionClassifier(model, tokenizer, ours.spec,
                                     read_json(run / "thresholds.json"), precision="auto")
        rows.append(measure("emotion_lab predictor, LoRA not merged", unmerged.scores, texts,
                            labels, thresholds, reference, latency_texts)[0])

    with tempfile.TemporaryDirectory() as tmp:
        from transformers import pipeline

        hf = export_hf(run, Path(tmp) / "hf")
        pipe = pipeline("text-classification", model=str(Path(tmp) / "hf"), top_k=None,
                        function_to_apply="sigmoid", device="cpu")
        for batch in (1, 32):
            rows.append(measure(f"transformers pipeline, batch {batch}",
                                pipeline_scorer(pipe, ours.labels, batch), texts, labels,
                                thresholds, reference, latency_texts)[0])
        onnx = export_onnx(run, Path(tmp) / "onnx", quantize=True, evaluate=False, opset=18)
        for file, name in (("model.onnx", "ONNX Runtime fp32"),
                           ("model.int8.onnx", "ONNX Runtime int8 (dynamic)")):
            clf = load_onnx(Path(tmp) / "onnx", file)
            rows.append(measure(f"emotion_lab predictor on {name}", clf.scores, texts, labels,
                                thresholds, reference, latency_texts)[0])

    peer = max((r for r in rows if r["row"].startswith("transformers")),
               key=lambda r: r["texts_per_second"])
    batch_1 = next(r for r in rows if r["row"] == "transformers pipeline, batch 1")
    for r in rows:
        r["x_best_pipeline"] = r["texts_per_second"] / peer["texts_per_second"]
        r["x_pipeline_batch_1"] = r["texts_per_second"] / batch_1["texts_per_second"]
        r["model_gflop_per_s"] = flops / r["seconds"] / 1e9
        r["share_of_fp32_matmul_peak"] = flops / r["seconds"] / peak
    result = {"machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(),
                          "python": platform.python_version(), "torch": torch.__version__},
              "fp32_matmul_peak_gflop_per_s": peak / 1e9, "model_gflop_per_pass": flops / 1e9,
              "real_tokens": sum(lengths),
              "run": str(run), "texts": len(texts), "export_checks": {"hf": hf, "onnx": onnx},
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nfp32 matmul peak {peak / 1e9:.0f} GFLOP/s; one pass = {flops / 1e9:.0f} GFLOP "
          f"over {sum(lengths):,} real tokens")
    print(f"best pipeline: {peer['row']}")
    print("| row | texts/s | x best pipeline | x pipeline batch 1 | share of fp32 peak | "
          "p50 ms | p95 ms | test macro-F1 | same label sets as fp32 reference |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['row']} | {r['texts_per_second']:.0f} | {r['x_best_pipeline']:.2f} | "
              f"{r['x_pipeline_batch_1']:.2f} | {100 * r['share_of_fp32_matmul_peak']:.0f}% | "
              f"{r['latency_ms_p50']:.1f} | {r['latency_ms_p95']:.1f} | {r['test_macro_f1']:.4f} "
              f"| {100 * r.get('same_label_sets', 1):.2f}% |")


if __name__ == "__main__":
    main()
