"""GoEmotions examples rebuilt from the rater-level raw files (goemotions_1.csv ...).

Each row of those files is one rater's annotation of one comment: `text, id, author, subreddit,
link_id, parent_id, created_utc, rater_id, example_very_unclear`, then one 0/1 column per label.
An example is all rows sharing an `id`. Rule:

- an example is DROPPED if any of its raters marked it very unclear;
- otherwise a label is kept when at least `min_agreement` raters chose it;
- an example with no label reaching `min_agreement` is DROPPED.

With `min_agreement=2` this is how the paper built its simplified release (labels with at least
2 raters agreeing). The kept examples are split at random, reproducibly from `seed`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_lab.data.types import DataError, LabelledData, Split

log = logging.getLogger(__name__)

REQUIRED = ["text", "id", "author", "subreddit", "link_id", "parent_id", "created_utc",
            "rater_id", "example_very_unclear"]
LABELS_AFTER = "example_very_unclear"  # every column after this one is a label


def _first_bad(path: Path, bad: pd.DataFrame, frame: pd.DataFrame, expected: str) -> None:
    """Raise for the first True cell of `bad`, naming the line a person would open the file at."""
    if not bad.to_numpy().any():
        return
    row, col = np.argwhere(bad.to_numpy())[0]
    column = bad.columns[col]
    # line = data row index + 2: the header is line 1 (texts in the release hold no newlines)
    raise DataError(f"{path}, line {row + 2}, column {column!r}: expected {expected}, "
                    f"got {frame[column].iloc[row]!r}.")


def _read_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: rater file not found.")
    try:
        # All text: ids must not become numbers, and an empty text must not become NaN.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a CSV header and rows).") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV file ({e}).") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}. Found {list(frame.columns)}; "
                        f"expected {REQUIRED} followed by one 0/1 column per label.")
    if frame.empty:
        raise DataError(f"{path}: the file is empty (a header but no rater rows).")
    log.info("%s: %d rater rows", path, len(frame))
    return frame


def _check_args(files: list, min_agreement: int, val_fraction: float,
                test_fraction: float) -> None:
    if not files:
        raise ValueError("read_rater_files: no files given (e.g. goemotions_1.csv ...).")
    if min_agreement < 1:
        raise ValueError(f"min_agreement must be >= 1 (raters who chose a label), "
                         f"got {min_agreement}.")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}.")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1 so that training keeps "
                         f"examples, got {val_fraction} + {test_fraction}.")


def read_rater_files(files: list[str | Path], min_agreement: int = 2,
                     val_fraction: float = 0.1, test_fraction: float = 0.1,
                     seed: int = 0) -> tuple[LabelledData, dict]:
    """Rebuild labelled examples from rater files (see the module docstring for the rule)."""
    _check_args(files, min_agreement, val_fraction, test_fraction)
    paths = [Path(f) for f in files]
    frames, columns = [], None
    for path in paths:
        frame = _read_file(path)
        if columns is None:
            columns = list(frame.columns)
        elif list(frame.columns) != columns:
            raise DataError(f"{path}: columns {list(frame.columns)} differ from those of "
                            f"{paths[0]}: {columns}. All rater files must share one header.")
        labels = columns[columns.index(LABELS_AFTER) + 1:]
        if not labels:
            raise DataError(f"{path}: no label columns after {LABELS_AFTER!r}.")
        _first_bad(path, ~frame[labels].isin(["0", "1"]), frame, "0 or 1")
        unclear = frame[[LABELS_AFTER]].apply(lambda s: s.str.strip().str.lower())
        _first_bad(path, ~unclear.isin(["true", "false", "1", "0"]), frame, "True/False or 1/0")
        frame[labels] = (frame[labels] == "1").astype(np.int64)
        frame[LABELS_AFTER] = unclear[LABELS_AFTER].isin(["true", "1"])
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)

    # sort=True orders examples by id, so nothing below depends on row or file order.
    by_id = rows.groupby("id", sort=True)
    text_count = by_id["text"].nunique()
    if (text_count > 1).any():
        bad_id = text_count.index[text_count > 1][0]
        texts = rows.loc[rows["id"] == bad_id, "text"].unique()[:2]
        raise DataError(f"id {bad_id!r} has differing texts across rater rows: "
                        f"{texts[0]!r} vs {texts[1]!r}.")
    texts = by_id["text"].first()
    very_unclear = by_id[LABELS_AFTER].any().to_numpy()
    agreed = (by_id[labels].sum() >= min_agreement).to_numpy()
    no_agreement = ~very_unclear & ~agreed.any(axis=1)
    keep = ~very_unclear & ~no_agreement

    kept_ids = texts.index[keep].to_numpy()
    kept_texts, kept_labels = texts.to_numpy()[keep], agreed[keep].astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(kept_ids))
    n_test, n_val = round(len(order) * test_fraction), round(len(order) * val_fraction)
    parts = {"train": order[n_test + n_val:], "val": order[n_test:n_test + n_val],
             "test": order[:n_test]}
    splits = {}
    for name, part in parts.items():
        part = np.sort(part)  # id order within a split: stable files, easy to diff
        splits[name] = Split([str(t) for t in kept_texts[part]], kept_labels[part],
                             [str(i) for i in kept_ids[part]])

    report = {
        "files": [str(p) for p in paths],
        "rater_rows": int(len(rows)),
        "examples": int(len(texts)),
        "raters_per_example_mean": float(len(rows) / len(texts)),
        "dropped_very_unclear": int(very_unclear.sum()),
        "dropped_no_agreement": int(no_agreement.sum()),
        "kept": int(keep.sum()),
        "min_agreement": int(min_agreement),
        "split_seed": int(seed),
        "split_sizes": {name: len(split) for name, split in splits.items()},
    }
    log.info("rater files: %d examples from %d rater rows, kept %d (dropped %d very unclear, "
             "%d without agreement)", report["examples"], report["rater_rows"], report["kept"],
             report["dropped_very_unclear"], report["dropped_no_agreement"])
    data = LabelledData(splits, list(labels), problem_type="multi_label",
                        source="raters:" + ",".join(p.name for p in paths), report=report)
    return data, report
