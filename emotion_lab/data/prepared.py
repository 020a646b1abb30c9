"""A prepared data directory (written by `python -m emotion_lab.prepare`, read by training).

    train.parquet, val.parquet, test.parquet   id, text, label_<name> (0/1) per label, and
                                               rationale (text) once emotion_lab.rationales
                                               has added one
    label_map.json                             {id: name}
    label_frequencies.csv / .png               count and share per label and split
    prepare_report.json                        rows read / removed by each rule / kept per split
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emotion_lab.data.types import SPLITS, DataError, LabelledData, Split

LABEL_PREFIX = "label_"
RATIONALE = "rationale"
REPORT = "prepare_report.json"


def is_prepared(directory: str | Path) -> bool:
    return (Path(directory) / "train.parquet").is_file()


def to_frame(split: Split, label_names: list[str]) -> pd.DataFrame:
    labels = pd.DataFrame(split.labels.astype(np.int8),
                          columns=[LABEL_PREFIX + n for n in label_names])
    frame = pd.concat([pd.DataFrame({"id": split.ids, "text": split.texts}), labels], axis=1)
    if split.rationales is not None:
        frame[RATIONALE] = split.rationales
    return frame


def write_prepared(directory: str | Path, data: LabelledData, report: dict[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        to_frame(data.splits[name], data.label_names).to_parquet(
            directory / f"{name}.parquet", index=False)
    (directory / "label_map.json").write_text(
        json.dumps(dict(enumerate(data.label_names)), indent=2) + "\n", encoding="utf-8")
    (directory / REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def read_prepared(directory: str | Path) -> LabelledData:
    directory = Path(directory)
    map_path = directory / "label_map.json"
    if not map_path.is_file():
        raise DataError(f"{map_path}: missing. A prepared directory holds train/val/test.parquet "
                        f"and label_map.json; rerun python -m emotion_lab.prepare.")
    label_map = json.loads(map_path.read_text(encoding="utf-8"))
    names = [label_map[str(i)] for i in range(len(label_map))]
    report_path = directory / REPORT
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    columns = [LABEL_PREFIX + n for n in names]
    splits = {}
    for name in SPLITS:
        path = directory / f"{name}.parquet"
        if not path.is_file():
            raise DataError(f"{path}: missing from the prepared directory.")
        frame = pd.read_parquet(path)
        missing = [c for c in ["id", "text", *columns] if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: columns {missing} missing (found: "
                            f"{', '.join(frame.columns)}); label_map.json and the splits "
                            f"disagree. Rerun python -m emotion_lab.prepare.")
        rationales = frame[RATIONALE].fillna("").astype(str).tolist() \
            if RATIONALE in frame.columns else None
        splits[name] = Split(frame["text"].tolist(), frame[columns].to_numpy(np.float32),
                             frame["id"].astype(str).tolist(), rationales)
    return LabelledData(splits, names, report.get("problem_type", "multi_label"),
                        source=f"prepared:{directory}")
