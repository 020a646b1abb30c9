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
What cannot be read is refused the same way, as a RunDirError naming the file, what is wrong
and what writes it: a missing file, invalid JSON, a record without the keys its readers need
(read_json, require), per-label values whose labels are not the model's (label_values), a path
that is no run directory at all (check_run_dir).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
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
TRAIN = "python -m emotion_lab.train"  # what writes a run directory
EXPORT = "python -m emotion_lab.export format=onnx"  # what writes emotion_lab_onnx.json


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def missing(path: Path, writer: str = TRAIN) -> RunDirError:
    return RunDirError(f"{path}: missing; {writer} writes it: give a directory it wrote, or "
                       f"run it again.")


def read_json(path: Path, keys: Iterable[str] | None = None, writer: str = TRAIN) -> Any:
    """A run's JSON record. A RunDirError naming the file where it is missing or not JSON and,
    with `keys`, where it is no object holding every one of them (require)."""
    if not path.is_file():
        raise missing(path, writer)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path}: not valid JSON ({e}); the file is damaged: copy it again "
                          f"from the run, or write it again with {writer}.") from None
    return data if keys is None else require(data, keys, path, writer)


def require(record: Any, keys: Iterable[str], path: Path, writer: str = TRAIN) -> dict:
    """`record`, or a RunDirError where it is no JSON object or lacks one of `keys`."""
    if not isinstance(record, dict):
        raise RunDirError(f"{path}: holds a {type(record).__name__}, not a JSON object; it is "
                          f"not the file {writer} writes: write it again with that.")
    absent = [key for key in keys if key not in record]
    if absent:
        raise RunDirError(f"{path}: no {', '.join(absent)}; it was not written by {writer} "
                          f"(or was edited): write it again with that.")
    return record


def label_values(values: Any, labels: list[str], path: Path, what: str,
                 writer: str = TRAIN) -> list[Any]:
    """`values` in label order, from {label: value} (or a list in label order); a RunDirError
    where their labels are not exactly the model's."""
    if isinstance(values, list):
        if len(values) == len(labels):
            return values
        problem = f"hold {len(values)} value(s) for the model's {len(labels)} labels"
    else:
        absent = [name for name in require(values, (), path, writer) if name not in labels]
        lost = [name for name in labels if name not in values]
        if not absent and not lost:
            return [values[name] for name in labels]
        problem = f"do not match the model's {len(labels)} labels (" + "; ".join(
            part for part in (lost and f"missing: {', '.join(lost[:5])}",
                              absent and f"not the model's: {', '.join(absent[:5])}") if part)
        problem += ")"
    raise RunDirError(f"{path}: {what} {problem}; use the file of the run that trained the "
                      f"model, or write it again with {writer}.")


def number(value: Any) -> bool:
    """A JSON number (not true/false), finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def read_thresholds(path: Path, labels: list[str], single_label: bool,
                    record: Any = None, writer: str = TRAIN) -> dict[str, float | None]:
    """thresholds.json (or `record`, the thresholds another file holds), checked against the
    model's labels: a number in [0, 1] for each (single-label runs take the arg-max: their
    thresholds are null and go unread)."""
    record = require(read_json(path) if record is None else record, (), path, writer)
    values = label_values(record, labels, path, "thresholds", writer)
    if not single_label:
        for name, value in zip(labels, values, strict=True):
            if not (number(value) and 0 <= value <= 1):
                raise RunDirError(
                    f"{path}: threshold {name}={value!r}; a multi-label run needs a number in "
                    f"[0, 1] for every label: write them again with {writer}.")
    return dict(zip(labels, values, strict=True))


def check_temperatures(values: Any, labels: list[str], path: Path,
                       writer: str = TRAIN) -> list[float] | None:
    """A record's temperatures (null: not calibrated): a positive number per label."""
    if values is None:
        return None
    values = label_values(values, labels, path, "temperatures", writer)
    for name, value in zip(labels, values, strict=True):
        if not (number(value) and value > 0):
            raise RunDirError(f"{path}: temperature {name}={value!r}; temperatures are positive "
                              f"numbers: write them again with {writer}.")
    return values


def check_run_dir(run_dir: str | Path) -> Path:
    """`run_dir`, or a RunDirError where it is no run directory at all (what it is instead)."""
    run_dir = Path(run_dir)
    give = f"give a run directory written by {TRAIN} (outputs/train/runs/<time>)"
    if (run_dir / "emotion_lab.json").is_file():
        raise RunDirError(f"{run_dir}: a run's model folder; give the run directory above it "
                          f"({run_dir.parent}).")
    if (run_dir / "emotion_lab_onnx.json").is_file():
        raise RunDirError(f"{run_dir}: an ONNX export, not a run directory; load it with "
                          f"load_onnx (emotion_lab.inference), or {give}.")
    if not run_dir.exists():
        raise RunDirError(f"{run_dir}: no such directory; {give}.")
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: a file, not a run directory; {give}.")
    if not (run_dir / "thresholds.json").is_file() and not (run_dir / "model").is_dir():
        raise RunDirError(f"{run_dir / 'thresholds.json'}: missing, as is model/: {run_dir} is "
                          f"not an emotion_lab run directory; {give}.")
    return run_dir


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
    path = Path(run_dir) / "metrics.json"
    metrics = read_json(path, keys=())
    found = metrics.get("run_format", 1)
    if found not in READABLE_RECORDS:
        raise RunDirError(
            f"{run_dir}: written in run format {found}; this emotion_lab reads the records "
            f"of formats {', '.join(map(str, READABLE_RECORDS))}. Use the emotion_lab version "
            f"that wrote the run, or train it again with this one.")
    return require(metrics, ("test/macro_f1",), path)


def write_spec(model_dir: Path, spec: dict[str, Any]) -> None:
    """model/emotion_lab.json, stamped with the run format."""
    write_json(model_dir / "emotion_lab.json", {"format": RUN_FORMAT, **spec})


def read_spec(model_dir: str | Path, keys: Iterable[str] = ()) -> dict[str, Any]:
    """The model spec of a run's model/ folder; a RunDirError for another run format, or
    where it lacks one of `keys`."""
    path = Path(model_dir) / "emotion_lab.json"
    spec = read_json(path, keys=())
    found = spec.get("format")
    if found != RUN_FORMAT:
        raise RunDirError(
            f"{model_dir}: written in run format {found}, and this emotion_lab reads format "
            f"{RUN_FORMAT}. Train the run again with this version (its config.yaml holds "
            f"the settings: python -m emotion_lab.train with the same overrides), or load it "
            f"with the emotion_lab version that wrote it.")
    return require(spec, keys, path)


def load_arrays(run_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    run_dir = Path(run_dir)
    out = []
    for kind in ("probs", "labels"):
        path = run_dir / f"{split}_{kind}.npy"
        if not path.is_file():
            raise missing(path)
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
    labels = list(read_json(path / "label_map.json", keys=()).values())
    per_label_csv = path / "per_label.csv"
    if not per_label_csv.is_file():
        raise missing(per_label_csv)
    per_label = pd.read_csv(per_label_csv)
    report = read_json(path / "data_report.json", keys=()) \
        if (path / "data_report.json").is_file() else {}
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
