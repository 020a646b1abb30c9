"""A dataset from tables read row by row: label names and their order across files, label
matrices, and val/test split off train where no file was given."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from emotion_lab.data.table_rows import Rows, TableOptions
from emotion_lab.data.types import PROBLEM_TYPES, SPLITS, DataError, LabelledData, Problem, Split

log = logging.getLogger(__name__)


def _label_names(parts: dict[str, Rows], labels: list[str] | None) -> tuple[list[str], str]:
    declared = [p.declared for p in parts.values() if p.declared]
    if any(set(d) != set(declared[0]) for d in declared):
        raise DataError(f"The files have different label columns: {declared}.")
    if labels is not None:
        missing = [d for d in (declared[0] if declared else []) if d not in labels]
        if len(set(labels)) < len(labels) or missing:
            raise DataError(f"labels={labels} must list each label once, and every label column "
                            f"({missing} missing).")
        return labels, "given"
    if declared:
        return declared[0], "columns"
    seen = {x for p in parts.values() for row in p.labels for x in row}
    return sorted(seen, key=_integers_first), "sorted"


def _integers_first(name: str) -> tuple:
    """Sort key: integer labels by value (2 before 10), then the rest alphabetically."""
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def _matrix(rows: Rows, names: list[str], single: bool) -> np.ndarray:
    index = {name: j for j, name in enumerate(names)}
    matrix = np.zeros((len(rows.labels), len(names)), dtype=np.float32)
    for i, row in enumerate(rows.labels):
        if single and len(row) != 1:
            raise DataError(f"{rows.at(i)}: {len(row)} labels {row}, but a single-label task "
                            f"needs exactly one per row; set problem_type=multi_label.")
        for name in row:
            if name not in index:
                raise DataError(f"{rows.at(i)}: unknown label {name!r}; the labels are {names}. "
                                f"Fix the row or add the label to `labels`.")
            matrix[i, index[name]] = 1.0
    return matrix


def split_off(split: Split, fraction: float, seed: int, stratify: bool,
              label_names: list[str] | None = None) -> tuple[Split, Split]:
    """(rest, part): a reproducible random `fraction` of `split`, both in file order. With
    `stratify` (single-label: classes are the one-hot columns) class shares are kept."""
    from sklearn.model_selection import train_test_split

    n, size = len(split), round(len(split) * fraction)
    if not 0 < size < n:
        raise DataError(f"Splitting {fraction:g} of {n} examples off would leave a side empty.")
    strata = split.labels.argmax(axis=1) if stratify else None
    if strata is not None:
        counts = np.bincount(strata)
        if (counts == 1).any():
            j = int(np.flatnonzero(counts == 1)[0])
            log.warning("Label %r has a single example: splitting at random, not stratified.",
                        label_names[j] if label_names else j)
            strata = None
        elif min(size, n - size) < np.count_nonzero(counts):  # sklearn needs a seat per class
            log.warning("Too few examples to stratify %d classes: splitting at random.",
                        np.count_nonzero(counts))
            strata = None
    rest, part = train_test_split(np.arange(n), test_size=size, random_state=seed, stratify=strata)
    return split.select(np.sort(rest)), split.select(np.sort(part))


def assemble(parts: dict[str, Rows], options: TableOptions, source: str) -> LabelledData:
    """Label names and order across files, label matrices, and val/test split off train
    (test first, then val, each a fraction of the original train) where `parts` has none."""
    problem_type = options.problem_type
    if problem_type not in ("auto", *PROBLEM_TYPES):
        raise DataError(f"problem_type={problem_type!r}: use auto, {', '.join(PROBLEM_TYPES)}.")
    if problem_type == "auto":
        problem_type = "multi_label" if any(p.multi for p in parts.values()) else "single_label"
    single = Problem(problem_type).single_label
    names, order = _label_names(parts, options.labels)
    if single and len(names) < 2:
        raise DataError(f"A single-label task needs at least 2 classes; the data has {names}.")
    splits = {s: Split(p.texts, _matrix(p, names, single), p.ids) for s, p in parts.items()}
    report: dict[str, Any] = {"label_order": order}
    n, carved = len(splits["train"]), {}
    for name in ("test", "val"):
        if name in splits:
            continue
        fraction, left = getattr(options, f"{name}_fraction"), len(splits["train"])
        carved[name] = round(n * fraction)
        if not 0 < carved[name] < left:
            raise DataError(f"{name}_fraction={fraction} of {n} training examples leaves the "
                            f"{name} split or train empty; give a {name} file or another "
                            f"{name}_fraction.")
        splits["train"], splits[name] = split_off(splits["train"], carved[name] / left,
                                                  options.seed, single, names)
    if carved:
        report |= {"split_from_train": carved, "stratified": single, "seed": options.seed}
    return LabelledData({s: splits[s] for s in SPLITS}, names, problem_type, source, report)
