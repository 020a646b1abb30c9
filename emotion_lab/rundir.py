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
    model/              tokenizer + weights (models/saving.py writes and loads them);
      emotion_lab.json  the model spec: kind (classifier | generative, models/kinds.py),
                        backbone, head, adapter, labels, problem type, temperatures, and
                        for generative models the prompt and generation settings

Records, not code: this module reads and writes the files, checks the run format, and
imports no model code, no Lightning and no plotting (import-linter's contracts in
pyproject.toml). Training writes a run with write_evaluation, write_config and (through
models/saving.py) write_spec; the faces read it through read_spec, load_arrays and
read_json, and the report finds and reads finished runs with find_runs and load_run.

RUN_FORMAT versions the layout: model/emotion_lab.json records it as `format` and
metrics.json as `run_format`. A model folder of another format is refused with what to do.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from emotion_lab.errors import RunDirError
from emotion_lab.evaluation.comparison import Run

REQUIRED = ("metrics.json", "thresholds.json", "label_map.json", "model/emotion_lab.json")
RUN_FORMAT = 2  # 2: the model spec names its kind; 1: before (no kind for classifiers)
# metrics.json, thresholds and arrays are the same in formats 1 and 2: reports and
# re-evaluations read both (format 1 wrote no run_format)
READABLE_RECORDS = (1, 2)



def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunDirError(f"{path}: missing. Is {path.parent} a complete emotion_lab run "
                          f"directory (written by python -m emotion_lab.train)?")
    return json.loads(path.read_text(encoding="utf-8"))


def write_evaluation(run_dir: Path, metrics: dict[str, Any], evaluation: Any,
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


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """config.yaml: the whole resolved config the run was made with."""
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config), encoding="utf-8")


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """A run's metrics.json; a RunDirError for a run format whose records this version
    cannot read."""
    metrics = read_json(Path(run_dir) / "metrics.json")
    found = metrics.get("run_format", 1)
    if found not in READABLE_RECORDS:
        raise RunDirError(
            f"{run_dir}: written in run format {found}; this emotion_lab reads the records "
            f"of formats {', '.join(map(str, READABLE_RECORDS))}. Use the emotion_lab version "
            f"that wrote the run, or train it again with this one.")
    return metrics


def write_spec(model_dir: Path, spec: dict[str, Any]) -> None:
    """model/emotion_lab.json, stamped with the run format."""
    write_json(model_dir / "emotion_lab.json", {"format": RUN_FORMAT, **spec})


def read_spec(model_dir: str | Path) -> dict[str, Any]:
    """The model spec of a run's model/ folder; a RunDirError for another run format."""
    spec = read_json(Path(model_dir) / "emotion_lab.json")
    found = spec.get("format")
    if found != RUN_FORMAT:
        raise RunDirError(
            f"{model_dir}: written in run format {found}, and this emotion_lab reads format "
            f"{RUN_FORMAT}. Train the run again with this version (its config.yaml holds "
            f"the settings: python -m emotion_lab.train with the same overrides), or load it "
            f"with the emotion_lab version that wrote it.")
    return spec


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
    metrics = read_metrics(path)
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
