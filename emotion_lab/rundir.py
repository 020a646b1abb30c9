"""The run directory: the contract between training and everything after it.

    metrics.json        val/test summary metrics, parameter counts, timing
    per_label.csv       split, label, support, precision, recall, f1, pr_auc, ece, brier,
                        threshold
    thresholds.json     {label: threshold}, fitted on validation (null: single-label, arg-max)
    temperatures.json   {label: T} when calibration is on (fitted on validation); the probs
                        arrays are then calibrated, *_probs_uncalibrated.npy the raw ones
    data_report.json    what the data source and the cleaning rules did, training label counts
    test_texts.json     the test texts in the order of the arrays (error analysis, explain)
    label_map.json      {id: label}
    {val,test}_{probs,labels}.npy
    config.yaml         the resolved training config
    model/              tokenizer + weights, loadable with load_model() alone:
      emotion_lab.json  how to rebuild: backbone, head, adapter, labels
      full/frozen_head: a HF model directory (config.json, model.safetensors);
                        emotion_lab's own head adds classifier.safetensors
      lora:             adapter/ (PEFT adapter + trained head); the base comes from the
                        backbone source recorded in emotion_lab.json
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from emotion_lab.backbones import PooledClassifier, build_classifier

REQUIRED = ("metrics.json", "thresholds.json", "label_map.json", "model/emotion_lab.json")


class RunDirError(FileNotFoundError):
    """A run directory that lacks something; the message names the file."""


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunDirError(f"{path}: missing. Is {path.parent} a complete emotion_lab run "
                          f"directory (written by python -m emotion_lab.train)?")
    return json.loads(path.read_text(encoding="utf-8"))


def write_results(run_dir: Path, metrics: dict[str, Any], per_label: dict[str, list[dict]],
                  thresholds: np.ndarray | None, label_names: list[str],
                  arrays: dict[str, np.ndarray]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "thresholds.json",
               {name: None if thresholds is None else float(thresholds[i])
                for i, name in enumerate(label_names)})
    write_json(run_dir / "label_map.json", dict(enumerate(label_names)))
    with (run_dir / "per_label.csv").open("w", newline="", encoding="utf-8") as f:
        fields = ["split", "label", "support", "precision", "recall", "f1", "pr_auc", "ece",
                  "brier", "threshold"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for split, rows in per_label.items():
            writer.writerows({"split": split, **row} for row in rows)
    for name, array in arrays.items():
        np.save(run_dir / f"{name}.npy", array)


def _plain_classifier(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def save_model(model_dir: Path, model: nn.Module, tokenizer, backbone: dict[str, Any],
               head: dict[str, Any], adapter: str, label_names: list[str],
               problem_type: str = "multi_label",
               temperatures: list[float] | None = None) -> None:
    """Save the trained classifier so that load_model() needs nothing but this folder."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(model_dir)
    # transformers 5's BertweetTokenizer rewrites bpe.codes in a form its own loader misreads
    # (merges lost); the original vocabulary files are what it was trained with anyway.
    for attr, name in getattr(tokenizer, "vocab_files_names", {}).items():
        source = getattr(tokenizer, attr, None)
        if isinstance(source, str) and Path(source).is_file():
            shutil.copyfile(source, model_dir / name)
    spec = {"format": 1, "adapter": adapter, "head": head, "labels": label_names,
            "problem_type": problem_type, "temperatures": temperatures,
            "backbone": dict(backbone)}
    if hasattr(model, "peft_config"):
        model.save_pretrained(model_dir / "adapter")
    else:
        if isinstance(model, PooledClassifier):
            model.encoder.save_pretrained(model_dir)
            save_file({k: v.contiguous() for k, v in model.classifier.state_dict().items()},
                      model_dir / "classifier.safetensors")
        else:
            model.save_pretrained(model_dir)
        # The folder is now the backbone: rebuilding needs no hub and no package.
        spec["backbone"].update(model=".", tokenizer=".", local_package=None, random_init=None)
    write_json(model_dir / "emotion_lab.json", spec)


def load_model(model_dir: str | Path) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(classifier in eval mode, tokenizer, spec) from a run's model/ folder."""
    from emotion_lab.backbones import load_tokenizer

    model_dir = Path(model_dir)
    spec = read_json(model_dir / "emotion_lab.json")
    backbone = dict(spec["backbone"])
    for key in ("model", "tokenizer"):
        if backbone.get(key) == ".":
            backbone[key] = str(model_dir)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    # Rebuilding reports the head (or pooler) as freshly initialised before the trained
    # weights are loaded into it below: true, expected, and alarming to read; hidden.
    hf_logging.set_verbosity_error()
    try:
        model, _ = build_classifier(backbone, spec["labels"], spec["head"],
                                    spec.get("problem_type", "multi_label"))
    finally:
        hf_logging.set_verbosity(verbosity)
    if (model_dir / "adapter").is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir / "adapter")
    elif isinstance(model, PooledClassifier):
        model.classifier.load_state_dict(load_file(model_dir / "classifier.safetensors"))
    tokenizer = load_tokenizer({**backbone, "tokenizer": str(model_dir)})
    return model.eval(), tokenizer, spec


def load_arrays(run_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    run_dir = Path(run_dir)
    out = []
    for kind in ("probs", "labels"):
        path = run_dir / f"{split}_{kind}.npy"
        if not path.is_file():
            raise RunDirError(f"{path}: missing from the run directory.")
        out.append(np.load(path))
    return out[0], out[1]


@torch.inference_mode()
def predict_probs(model: nn.Module, tokenizer, texts: list[str], max_length: int = 128,
                  batch_size: int = 64, single_label: bool = False,
                  temperatures: list[float] | None = None, device: str | torch.device = "cpu",
                  autocast: torch.dtype | None = None, progress=None) -> np.ndarray:
    """Probabilities for texts (sigmoid per label, divided by the run's fitted temperatures
    when it has them; softmax for single-label tasks), batched in length order, returned in
    input order. `autocast` (e.g. torch.bfloat16) runs the model under autocast on `device`;
    `progress(n)` is called after each batch with its size."""
    # Sort by token count, not characters: on GoEmotions' test texts, batches of 64 sorted by
    # characters carry 41% padding tokens, sorted by tokens 2%, and padding is compute.
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True,
                                             max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    device = torch.device(device)
    scale = None if temperatures is None else torch.tensor(temperatures, device=device)
    probs: dict[int, np.ndarray] = {}
    for idx in batches:
        # tokenising again costs ~3% of the forward passes; tokenizer.pad on the first
        # encoding would warn that it is the slower path for fast tokenizers
        enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        with torch.autocast(device.type, dtype=autocast or torch.float32,
                            enabled=autocast is not None):
            logits = model(input_ids=enc["input_ids"].to(device),
                           attention_mask=enc["attention_mask"].to(device)).logits
        logits = logits.float()
        if scale is not None:
            logits = logits / scale
        p = torch.softmax(logits, -1) if single_label else torch.sigmoid(logits)
        probs.update(zip(idx, p.cpu().numpy(), strict=True))
        if progress is not None:
            progress(len(idx))
    return np.stack([probs[i] for i in range(len(texts))])
