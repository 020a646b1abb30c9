"""Distillation targets: teacher runs' probabilities on the training texts, averaged over the
teachers and mixed into the labels, so a student learns from "how likely" as well as "yes".

The teachers' scores are files written by the predict face with all_scores=true (.csv: a
`score_<label>` column per label; .jsonl and .parquet: a `scores` object a row):

    python -m emotion_lab.prepare out_dir=data/goemotions          # the training texts
    python -m emotion_lab.predict run_dir=<teacher> input=data/goemotions/train.parquet \
        output=teacher.parquet all_scores=true

They are matched to the training split by text, so any order or extra rows are fine; a
training text no teacher file scored is an error, never a silently hard-labelled example.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emotion_lab.data.files import read_table
from emotion_lab.data.types import DataError

SCORE_PREFIX = "score_"  # the predict face's column per label (all_scores=true)


def _scores_frame(path: Path, label_names: Sequence[str]) -> pd.DataFrame:
    """A teacher file as text -> one float column per label, in label order."""
    frame = read_table(path)
    if "text" not in frame.columns:
        raise DataError(f"data.distill.teachers: {path} has no 'text' column; write it with "
                        f"python -m emotion_lab.predict ... all_scores=true from a file whose "
                        f"text column is 'text' (a prepared train.parquet has it).")
    if "scores" in frame.columns and not any(c.startswith(SCORE_PREFIX) for c in frame.columns):
        # .jsonl output: one {label: score} object a row
        frame = pd.concat([frame[["text"]], pd.DataFrame(
            [row or {} for row in frame["scores"]], index=frame.index
        ).add_prefix(SCORE_PREFIX)], axis=1)
    columns = [SCORE_PREFIX + name for name in label_names]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"data.distill.teachers: {path} lacks {len(missing)} of the "
                        f"{len(columns)} label scores ({', '.join(missing[:3])}...): write "
                        f"it with all_scores=true, from a teacher trained on these labels.")
    scores = frame[columns].apply(pd.to_numeric, errors="coerce")
    bad = scores.isna().any(axis=1) | ((scores < 0) | (scores > 1)).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"data.distill.teachers: {path}, row {row}: a score is missing or "
                        f"outside [0, 1] ({int(bad.sum())} such row(s)); teacher scores are "
                        f"probabilities.")
    scores.columns = list(label_names)
    return pd.concat([frame["text"].astype(str), scores], axis=1).drop_duplicates("text")


def teacher_probabilities(paths: Sequence[str | Path], texts: Sequence[str],
                          label_names: Sequence[str]) -> np.ndarray:
    """(len(texts), num_labels) float32: the mean of the teachers' scores for each text."""
    if not paths:
        raise DataError("data.distill.teachers is empty: give one teacher file or more, or "
                        "null for no distillation.")
    total = np.zeros((len(texts), len(label_names)), dtype=np.float64)
    for path in paths:
        table = _scores_frame(Path(path), label_names).set_index("text")
        found = table.reindex(list(texts))
        absent = found.isna().any(axis=1).to_numpy()
        if absent.any():
            example = texts[int(np.flatnonzero(absent)[0])]
            raise DataError(f"data.distill.teachers: {path} has no score for {int(absent.sum()):,} "
                            f"of the {len(texts):,} training texts (for example {example!r}). "
                            f"Score the training split this run trains on: the same data, "
                            f"cleaning and taxonomy (python -m emotion_lab.prepare writes it).")
        total += found.to_numpy(np.float64)
    return (total / len(paths)).astype(np.float32)


def distilled_targets(labels: np.ndarray, teachers: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * labels + weight * teachers: weight 0 is the labels, 1 the teachers."""
    return ((1.0 - weight) * labels + weight * teachers).astype(np.float32)


def distill_report(config: dict[str, Any], examples: int) -> dict[str, Any]:
    """What the data report records about the targets."""
    return {"teachers": [str(p) for p in config["teachers"]], "weight": config["weight"],
            "examples": examples}
