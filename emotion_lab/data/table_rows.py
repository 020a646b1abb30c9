"""One table's labelled examples: its texts, label names per row and ids, checked row by row.

Label names depend on every file of a dataset, so this step stops at names; `assembly` fixes
the label names and order across files and builds the label matrices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emotion_lab.data.types import DataError

ZEROS, ONES = {"0", "0.0", "false"}, {"1", "1.0", "true"}  # 0/1 cells, as lower-case text


@dataclass(kw_only=True)
class TableOptions:
    """How to read labelled texts from a table: the options LocalFiles and HubText share."""

    text_column: str = "text"
    label_column: str | None = "label"  # scalar labels, lists, or text split by label_separator
    label_columns: list[str] | str | None = None  # 0/1 columns or their prefix; wins over the above
    label_separator: str | None = None
    id_column: str | None = None  # default: <file stem>:<row index>
    labels: list | None = None  # label values in order; default: the values found, sorted
    problem_type: str = "auto"  # auto | single_label | multi_label
    val_fraction: float = 0.1  # of train, for each split without a file
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        # Hydra hands ListConfigs; labels are matched as text, whatever type a file stores
        if self.label_columns is not None and not isinstance(self.label_columns, str):
            self.label_columns = [str(c) for c in self.label_columns]
        if self.labels is not None:
            self.labels = [str(x) for x in self.labels]


@dataclass
class Rows:
    """One file's examples, before the label names are fixed across files."""

    texts: list[str]
    labels: list[list[str]]  # label names per row
    ids: list[str]
    multi: bool  # the format itself is multi-label: lists, a separator, 0/1 columns
    declared: list[str]  # label names that 0/1 columns declare up front, in order
    at: Callable[[int], str]  # row index -> "file, line n", for messages


def value_kind(value: Any) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):  # Parquet and hub lists come as arrays
        return "list"
    if isinstance(value, str):
        return "str" if value.strip() else "missing"
    if pd.isna(value):
        return "missing"
    return "number" if isinstance(value, (int, float, np.number)) else "other"


def _no_missing(bad: list[int], what: str, at: Callable[[int], str]) -> None:
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError(f"{len(bad)} row(s) with {what}: {'; '.join(map(at, bad[:5]))}{more}. "
                        f"Fill them in or remove them.")


def _multi_hot_rows(frame: pd.DataFrame, spec: list[str] | str, column: Callable,
                    at: Callable[[int], str]) -> tuple[list[list[str]], list[str]]:
    names = ({c: c[len(spec):] for c in frame.columns  # a prefix: label_joy -> joy
              if isinstance(c, str) and c.startswith(spec) and c != spec}
             if isinstance(spec, str) else {c: c for c in spec})
    if not names:
        column(f"{spec}*")  # raises, listing the columns found
    hot = np.zeros((len(frame), len(names)), dtype=bool)
    for j, name in enumerate(names):
        cells = column(name).astype(str).str.strip().str.lower()
        bad = np.flatnonzero(~cells.isin(ZEROS | ONES).to_numpy())
        if bad.size:
            raise DataError(f"{at(bad[0])}: column {name!r} holds {frame[name].tolist()[bad[0]]!r};"
                            f" 0/1 label columns take only 0 or 1 (or 0.0/1.0, true/false).")
        hot[:, j] = cells.isin(ONES).to_numpy()
    declared = list(names.values())
    return [[declared[j] for j in np.flatnonzero(row)] for row in hot], declared


def _label_rows(series: pd.Series, separator: str | None,
                at: Callable[[int], str]) -> tuple[list[list[str]], bool]:
    values = series.tolist()
    kinds = [value_kind(v) for v in values]
    _no_missing([i for i, k in enumerate(kinds) if k == "missing"],
                f"no label in column {series.name!r}", at)
    odd = next((i for i, k in enumerate(kinds) if k != kinds[0]), None)
    if odd is not None:
        raise DataError(f"{at(odd)}: column {series.name!r} mixes {kinds[0]} and {kinds[odd]} "
                        f"labels ({values[0]!r} first, {values[odd]!r} here); use one type for "
                        f"the whole column: strings, integers, or lists of them.")
    bad = next((i for i, v in enumerate(values) if kinds[i] == "other" or kinds[i] == "list"
                and any(value_kind(x) not in ("str", "number") for x in v)), None)
    if bad is not None:
        raise DataError(f"{at(bad)}: label {values[bad]!r} is not a string, an integer or a "
                        f"list of them.")
    if kinds[0] == "list":
        return [[str(x).strip() for x in v] for v in values], True
    if separator is not None and kinds[0] == "str":
        return [[p.strip() for p in v.split(separator) if p.strip()] for v in values], True
    return [[str(v).strip()] for v in values], False


def read_rows(frame: pd.DataFrame, where: str, options: TableOptions, *, id_prefix: str,
              line_offset: int | None = 2) -> Rows:
    """Check one table and take its texts, labels (as names) and ids. `where` names it in
    messages; row i is "line i + line_offset" there, or "row i" when line_offset is None."""

    def at(i: int) -> str:
        return f"{where}, row {i}" if line_offset is None else f"{where}, line {i + line_offset}"

    def column(name: str) -> pd.Series:
        if name not in frame.columns:
            raise DataError(f"{where}: no column {name!r}; the columns are {list(frame.columns)}. "
                            f"Set text_column, label_column(s) or id_column to match.")
        return frame[name]

    texts = column(options.text_column).tolist()
    kinds = [value_kind(t) for t in texts]
    odd = next((i for i, k in enumerate(kinds) if k not in ("str", "missing")), None)
    if odd is not None:
        raise DataError(f"{at(odd)}: the text is {texts[odd]!r} ({type(texts[odd]).__name__}), "
                        f"not a string; write it as a string (in quotes, in JSON).")
    _no_missing([i for i, k in enumerate(kinds) if k == "missing"], "an empty text", at)
    ids = ([str(v) for v in column(options.id_column)] if options.id_column is not None
           else [f"{id_prefix}:{i}" for i in range(len(frame))])
    if options.label_columns is not None:
        labels, declared = _multi_hot_rows(frame, options.label_columns, column, at)
        return Rows(texts, labels, ids, True, declared, at)
    if options.label_column is None:
        raise DataError("No labels configured: set label_column or label_columns.")
    labels, multi = _label_rows(column(options.label_column), options.label_separator, at)
    return Rows(texts, labels, ids, multi, [], at)
