"""Training speed and memory of a decoder backbone through emotion_lab, without its weights:
random Llama models built from a config, with a byte-level BPE tokenizer that keeps Llama 3's
quirks (testing/tiny_backbones.py), loaded through `backbone=smollm2_135m
backbone.model=<folder>` as a user's download would be.

    python benchmarks/lm_speed.py [--rows tiny_llama_full,...] [--examples-135m 320]

Shapes: `tiny_llama` (2 layers, 64 hidden, 0.1M parameters) and `smollm2_135m` (SmolLM2-135M's
exact shape: 30 layers, 576 hidden, 9 heads with 3 key/value heads, 1,536 feed-forward,
49,152 vocabulary: 134.5M parameters, so a step costs what the real model's costs; random
weights learn nothing, so no F1 is reported). Each row runs in a fresh process (its peak RSS
is the memory the configuration needed, Python and torch included) through train_speed.py's
machinery: one epoch over the first N GoEmotions training texts in batches of 32, no
evaluation during training, precision=auto. Model FLOPs as in train_speed.py, against the
matmul peak of the row's own precision. The tokenizer here has 500 tokens, so a text is
about 2.4x as many tokens as under SmolLM2's 49k vocabulary; tokens/s compare, samples/s
are pessimistic for the real tokenizer.
Writes benchmarks/results/lm_speed.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from summarize_runs import cpu_name  # noqa: E402
from train_speed import emotion_lab_row, matmul_peak, native_bf16  # noqa: E402

SHAPES: dict[str, dict[str, int]] = {
    "tiny_llama": {},
    "smollm2_135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152},
}
# row: (shape, adapter, overrides)
ROWS: dict[str, tuple[str, str, list[str]]] = {
    "tiny_llama_full": ("tiny_llama", "full", []),
    "tiny_llama_lora": ("tiny_llama", "lora", []),
    "smollm2_135m_full": ("smollm2_135m", "full", []),
    "smollm2_135m_lora": ("smollm2_135m", "lora", []),
    "smollm2_135m_lora_bf16_base": ("smollm2_135m", "lora", ["backbone.dtype=bfloat16"]),
    "smollm2_135m_lora_checkpointing": ("smollm2_135m", "lora",
                                        ["model.gradient_checkpointing=true"]),
    "smollm2_135m_frozen_head": ("smollm2_135m", "frozen_head", []),
}


def model_facts(folder: Path) -> dict[str, int]:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(folder)
    h, i, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    head_dim = h // c.num_attention_heads
    kv = c.num_key_value_heads * head_dim
    # q, o: h x h; k, v: h x kv; gate, up, down: h x i; two RMSNorm weights
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return {"non_embedding_params": layers * per_layer + h, "layers": layers, "hidden": h,
            "embedding_params": c.vocab_size * h}


def training_flops(facts: dict[str, int], lengths: list[int], adapter: str) -> float:
    factor = {"full": 6, "lora": 4, "frozen_head": 2}[adapter]
    dense = factor * facts["non_embedding_params"] * sum(lengths)
    attention = factor / 6 * 12 * facts["layers"] * facts["hidden"] * sum(t * t for t in lengths)
    return dense + attention


def one_row(name: str, args: argparse.Namespace) -> dict[str, Any]:
    shape, adapter, extra = ROWS[name]
    folder = Path(args.models) / shape
    examples = args.examples_135m if shape == "smollm2_135m" else args.examples
    with tempfile.TemporaryDirectory() as out:
        row = emotion_lab_row(name, adapter, [
            "backbone=smollm2_135m", f"backbone.model={folder}",
            f"data.max_train_examples={examples}", "data.max_eval_examples=64",
            "data.batch_size=32", "data.eval_taxonomies=[]", *extra], Path(out))
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["shape"], row["overrides"] = shape, extra
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=None, help="comma-separated rows (default: all)")
    parser.add_argument("--examples", type=int, default=3200, help="texts for tiny rows")
    parser.add_argument("--examples-135m", type=int, default=320,
                        help="texts for SmolLM2-135M-shaped rows (10 steps of 32)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/lm_speed.json")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--models", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        args.result.write_text(json.dumps(one_row(args.one, args)))
        return 0
    names = args.rows.split(",") if args.rows else list(ROWS)
    unknown = set(names) - set(ROWS)
    if unknown:
        parser.error(f"unknown row(s) {sorted(unknown)}; rows: {', '.join(ROWS)}")
    import transformers

    from emotion_lab.testing.tiny_backbones import build_tiny_backbone

    print(f"measuring matmul peaks ({torch.get_num_threads()} threads)...", flush=True)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        facts = {}
        for shape in {ROWS[n][0] for n in names}:
            facts[shape] = model_facts(build_tiny_backbone("llama", models / shape,
                                                           **SHAPES[shape]))
        for name in names:
            print(f"{name}...", flush=True)
            result = Path(tmp) / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--one", name, "--models", str(models),
                            "--result", str(result), "--examples", str(args.examples),
                            "--examples-135m", str(args.examples_135m)], check=True)
            row = json.loads(result.read_text())
            lengths = row.pop("lengths")
            row["samples_per_second"] = row["samples"] / row["seconds"]
            row["tokens_per_second"] = sum(lengths) / row["seconds"]
            row["mean_tokens"] = sum(lengths) / len(lengths)
            row["peak"] = "bf16" if "bf16" in row["precision"] else "fp32"
            flops = training_flops(facts[row["shape"]], lengths, row["adapter"]) / row["seconds"]
            row["model_flops_per_second"] = flops
            row["share_of_peak"] = flops / peaks[row["peak"]]
            row.pop("test_macro_f1", None)  # random weights: nothing to report
            rows.append(row)
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
               "native_bf16": native_bf16(), "torch": torch.__version__,
               "transformers": transformers.__version__, "matmul_peak_flops": peaks,
               "models": facts}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"\n{machine['cpu']}, {machine['threads']} threads, peaks fp32 "
          f"{peaks['fp32'] / 1e9:.0f} / bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print("| row | precision | samples/s | tokens/s | share of its peak | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['row']} | {r['precision']} | {r['samples_per_second']:.1f} | "
              f"{r['tokens_per_second']:,.0f} | {r['share_of_peak']:.1%} | "
              f"{r['peak_rss_mib']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
