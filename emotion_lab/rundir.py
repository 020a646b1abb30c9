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
    confusion_test.png  true vs predicted label on test (share of each true label's examples)
    generative models (model=generative) also write:
      {val,test}_answers.jsonl         per example: generated text, parsed labels, unknown
                                       words, rationale
      {val,test}_generated_preds.npy   the labels parsed from the answers (0/1)
      confusion_test_generated.png
    config.yaml         the resolved training config
    model/              tokenizer + weights, loadable with load_model() alone:
      emotion_lab.json  how to rebuild: backbone, head, adapter, labels
      full/frozen_head: a HF model directory (config.json, model.safetensors);
                        emotion_lab's own head adds classifier.safetensors
      lora:             adapter/ (PEFT adapter + trained head); the base comes from the
                        backbone source recorded in emotion_lab.json
      generative:       the language model (or its adapter/); emotion_lab.json holds
                        kind: generative, the prompt and the generation settings

Training writes a run with write_evaluation, write_config and save_model; every face reads
runs through load_model, load_arrays and read_json, and the report finds and reads finished
runs with find_runs and load_run. Nothing here imports a face or the training code.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

from emotion_lab.evaluation.comparison import Run
from emotion_lab.evaluation.error_analysis import predictions, true_vs_predicted
from emotion_lab.evaluation.figures import plot_label_heatmap
from emotion_lab.evaluation.run_evaluation import RunEvaluation
from emotion_lab.models.backbones import load_tokenizer, no_transformers_bars
from emotion_lab.models.generative import build_language_model
from emotion_lab.models.heads import PooledClassifier, build_classifier

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


def write_evaluation(run_dir: Path, metrics: dict[str, Any], evaluation: RunEvaluation,
                     label_names: list[str]) -> None:
    """metrics.json (`metrics`: the evaluation's metrics and the run's facts), per_label.csv,
    thresholds.json, label_map.json, temperatures.json (with calibration), the arrays."""
    run_dir.mkdir(parents=True, exist_ok=True)
    thresholds, temperatures = evaluation.thresholds, evaluation.temperatures
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "thresholds.json",
               {name: None if thresholds is None else float(thresholds[i])
                for i, name in enumerate(label_names)})
    write_json(run_dir / "label_map.json", dict(enumerate(label_names)))
    if temperatures is not None:
        write_json(run_dir / "temperatures.json",
                   {name: float(t) for name, t in zip(label_names, temperatures, strict=True)})
    with (run_dir / "per_label.csv").open("w", newline="", encoding="utf-8") as f:
        fields = ["split", "label", "support", "precision", "recall", "f1", "pr_auc", "ece",
                  "brier", "threshold"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for split, rows in evaluation.per_label.items():
            writer.writerows({"split": split, **row} for row in rows)
    for name, array in evaluation.arrays.items():
        np.save(run_dir / f"{name}.npy", array)
    for split, rows in evaluation.answers.items():
        with (run_dir / f"{split}_answers.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_confusion(run_dir, evaluation, label_names)


def write_confusion(run_dir: Path, evaluation: RunEvaluation, label_names: list[str]) -> None:
    """confusion_test.png: true against predicted label on test (thresholded scores), and
    confusion_test_generated.png for the labels a generative model wrote."""
    arrays = evaluation.arrays
    made = {"confusion_test.png": predictions(arrays["test_probs"], evaluation.thresholds)}
    if "test_generated_preds" in arrays:
        made["confusion_test_generated.png"] = arrays["test_generated_preds"]
    for name, preds in made.items():
        what = "generated answers" if "generated" in name else "scores over thresholds"
        plot_label_heatmap(true_vs_predicted(arrays["test_labels"], preds), label_names,
                           run_dir / name, f"test: true vs predicted label ({what})")


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """config.yaml: the whole resolved config the run was made with."""
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config), encoding="utf-8")


def save_model(model_dir: Path, model: nn.Module, tokenizer, backbone: dict[str, Any],
               head: dict[str, Any], adapter: str, label_names: list[str],
               problem_type: str = "multi_label",
               temperatures: list[float] | None = None,
               generative: dict[str, Any] | None = None) -> None:
    """Save the trained classifier so that load_model() needs nothing but this folder.
    `generative`: a model that writes its labels: its prompt and generation settings."""
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
    if generative is not None:
        spec |= {"kind": "generative", **generative}
    with no_transformers_bars():
        if hasattr(model, "peft_config"):
            model.save_pretrained(model_dir / "adapter")
        elif isinstance(model, PooledClassifier):
            model.encoder.save_pretrained(model_dir)
            save_file({k: v.contiguous() for k, v in model.classifier.state_dict().items()},
                      model_dir / "classifier.safetensors")
        else:
            model.save_pretrained(model_dir)
    if not hasattr(model, "peft_config"):
        # The folder is now the backbone: rebuilding needs no hub and no package.
        spec["backbone"].update(model=".", tokenizer=".", local_package=None, random_init=None)
    write_json(model_dir / "emotion_lab.json", spec)


def load_model(model_dir: str | Path) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(classifier in eval mode, tokenizer, spec) from a run's model/ folder."""
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
        model = build_language_model(backbone) if spec.get("kind") == "generative" else \
            build_classifier(backbone, spec["labels"], spec["head"],
                             spec.get("problem_type", "multi_label"))[0]
    finally:
        hf_logging.set_verbosity(verbosity)
    if (model_dir / "adapter").is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir / "adapter")
    elif isinstance(model, PooledClassifier):
        model.classifier.load_state_dict(load_file(model_dir / "classifier.safetensors"))
    tokenizer = load_tokenizer({**backbone, "tokenizer": str(model_dir)})
    # a base trained in bf16 (backbone.dtype) predicts in fp32, as the run's arrays were made
    return model.float().eval(), tokenizer, spec


def load_arrays(run_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    run_dir = Path(run_dir)
    out = []
    for kind in ("probs", "labels"):
        path = run_dir / f"{split}_{kind}.npy"
        if not path.is_file():
            raise RunDirError(f"{path}: missing from the run directory.")
        out.append(np.load(path))
    return out[0], out[1]


def find_runs(paths: list[Path]) -> list[Path]:
    """Every directory at or below `paths` that holds a metrics.json (an emotion_lab run)."""
    for path in paths:
        if not path.is_dir():
            raise RunDirError(f"{path}: no such directory. Give run directories or multirun "
                              f"directories (outputs/train/runs/..., outputs/train/multiruns/...).")
    found = sorted({m.parent for p in paths for m in p.rglob("metrics.json")})
    if not found:
        raise RunDirError(f"no runs found below {', '.join(map(str, paths))}: a run directory "
                          f"holds metrics.json, written by python -m emotion_lab.train.")
    return found


def load_run(path: Path) -> Run:
    """A finished run's metrics, labels, per-label rows and training label counts."""
    metrics = read_json(path / "metrics.json")
    labels = list(read_json(path / "label_map.json").values())
    per_label_csv = path / "per_label.csv"
    if not per_label_csv.is_file():
        raise RunDirError(f"{per_label_csv}: missing from the run directory.")
    per_label = pd.read_csv(per_label_csv)
    report = read_json(path / "data_report.json") if (path / "data_report.json").is_file() else {}
    # older runs lack training counts; test support orders the labels just as well
    counts, count_name = report.get("train_label_counts"), "training examples"
    if counts is None:
        counts, count_name = dict(per_label[per_label["split"] == "test"][["label", "support"]]
                                  .values), "test examples"
    # an evaluation variant shares its run's training config (it only re-fits thresholds)
    source = Path(metrics.get("evaluated_from", path))
    config_yaml = source / "config.yaml" if (source / "config.yaml").is_file() \
        else path / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(config_yaml), resolve=False) \
        if config_yaml.is_file() else {}
    return Run(path, metrics, labels, per_label, pd.Series(counts, dtype=int), count_name,
               config=config)
