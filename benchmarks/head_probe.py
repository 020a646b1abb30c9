"""A quick probe of a training recipe: N plain AdamW steps (constant lr, no Lightning) on the
real training data, then validation macro PR-AUC. It compares heads and initialisations in
a couple of CPU minutes, before committing to full runs.

    python benchmarks/head_probe.py data.dir=../shared/goemotions model.head.pooling=mean
    python benchmarks/head_probe.py data.dir=../shared/goemotions model.head.init_bias=zero

Any training override works; the result is appended to benchmarks/results/head_probe.jsonl.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emotion_lab.evaluation.metrics import pr_auc_per_label
from emotion_lab.models.backbones import load_tokenizer

CONF = Path(__file__).resolve().parents[1] / "conf"
DEFAULTS = ["data.max_train_examples=6400", "data.max_eval_examples=1000",
            "paths.output_dir=outputs/head_probe", "paths.sweep_group=null"]


def main(overrides: list[str]) -> dict:
    torch.manual_seed(0)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=DEFAULTS + overrides)
    config = OmegaConf.to_container(cfg, resolve=True)
    datamodule = instantiate(cfg.data, tokenizer=load_tokenizer(config["backbone"]))
    datamodule.setup()
    module = instantiate(cfg.model, label_names=datamodule.label_names,
                         train_frequencies=datamodule.train_label_frequencies.tolist())
    model = module.model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=float(cfg.model.optimizer.lr))
    start = time.perf_counter()
    for batch in datamodule.train_dataloader():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - start
    model.eval()
    probs = []
    with torch.inference_mode():
        for batch in datamodule.val_dataloader():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            probs.append((batch["index"], torch.sigmoid(logits.logits.float())))
    index = torch.cat([i for i, _ in probs])
    ordered = torch.empty(len(index), len(datamodule.label_names))
    ordered[index] = torch.cat([p for _, p in probs])
    ap = pr_auc_per_label(ordered.numpy(), datamodule.splits["val"].labels)
    result = {"overrides": overrides, "steps": len(datamodule.train_dataloader()),
              "lr": float(cfg.model.optimizer.lr), "train_seconds": round(seconds, 1),
              "val_macro_pr_auc": float(np.nanmean(ap)), "final_loss": float(loss)}
    out = Path(__file__).parent / "results" / "head_probe.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
