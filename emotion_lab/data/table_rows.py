"""Labelled texts from the user's own files (CSV, TSV, JSONL, Parquet) or a hub text dataset.

Two steps, because label names depend on every file: `read_rows` checks one table and takes its
texts, label names per row and ids; `assemble` fixes the label names and order across files,
builds the label matrices and splits val/test off train where no file was given.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emotion_lab.data import PROBLEM_TYPES, SPLITS, DataError, LabelledData, Split

log = logging.getLogger(__name__)

# Messages point at "line n" where a file has lines (CSV/TSV count the header), else at "row i".
LINE_OFFSETS = {".csv": 2, ".tsv": 2, ".jsonl": 1, ".parquet": None}
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
ZEROS, ONES = {"0", "0.0", "false"}, {"1", "1.0", "true"}  # 0/1 cells, as lower-case text


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # -sig: spreadsheet exports often start with a BOM
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8 ({e.reason}); save the file as "
                        f"UTF-8, e.g. iconv -f latin1 -t utf-8 in.csv > out.csv.") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected examples in it.")
    return text


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = []
    # "\n" only: JSON strings may hold U+2028, where splitlines() would cut
    for lineno, line in enumerate(_decode(path).rstrip().split("\n"), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {lineno}: not valid JSON ({e.msg}); a .jsonl file "
                            f"holds one JSON object a line, and no blank lines.") from None
        if not isinstance(records[-1], dict):
            raise DataError(f'{path}, line {lineno}: expected an object like {{"text": ..., '
                            f'"label": ...}}, got {type(records[-1]).__name__}.')
    return pd.DataFrame(records)


def _check_field_counts(path: Path, text: str, sep: str) -> None:
    """A row with more fields than the header would shift its columns (pandas makes the extra
    one an index, or drops it): refuse it, naming the line."""
    rows = csv.reader(io.StringIO(text), delimiter=sep)
    header = next(rows, [])
    for row in rows:
        if len(row) > len(header):
            raise DataError(f"{path}, line {rows.line_num}: {len(row)} fields, but the header "
                            f"has {len(header)}; quote fields that contain the separator "
                            f"({sep!r}), e.g. \"Thanks, really\".")


def read_table(path: str | Path) -> pd.DataFrame:
    """One file as a DataFrame, read by its suffix: .csv, .tsv, .jsonl or .parquet."""
    path, suffix = Path(path), Path(path).suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: no such file (relative paths start at {Path.cwd()}).")
    if suffix not in LINE_OFFSETS:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use one of "
                        f"{', '.join(LINE_OFFSETS)}.")
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types for a broken file
            raise DataError(f"{path}: not a readable Parquet file ({e}).") from e
    elif suffix == ".jsonl":
        frame = _read_jsonl(path)
    else:  # CSV fields are all text: str keeps texts like "42" or "NA" as written
        text, sep = _decode(path), "\t" if suffix == ".tsv" else ","
        _check_field_counts(path, text, sep)
        try:
            frame = pd.read_csv(io.StringIO(text), sep=sep, index_col=False,
                                dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DataError(f"{path}: cannot be read as {suffix[1:].upper()} ({e}).") from e
    if len(frame) == 0:
        raise DataError(f"{path}: no rows, only a header; expected one row per example.")
    return frame


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


def _kind(value: Any) -> str:
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
    kinds = [_kind(v) for v in values]
    _no_missing([i for i, k in enumerate(kinds) if k == "missing"],
                f"no label in column {series.name!r}", at)
    odd = next((i for i, k in enumerate(kinds) if k != kinds[0]), None)
    if odd is not None:
        raise DataError(f"{at(odd)}: column {series.name!r} mixes {kinds[0]} and {kinds[odd]} "
                        f"labels ({values[0]!r} first, {values[odd]!r} here); use one type for "
                        f"the whole column: strings, integers, or lists of them.")
    bad = next((i for i, v in enumerate(values) if kinds[i] == "other" or kinds[i] == "list"
                and any(_kind(x) not in ("str", "number") for x in v)), None)
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
    kinds = [_kind(t) for t in texts]
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
    single = problem_type == "single_label"
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


@dataclass
class LocalFiles(TableOptions):
    """Source for a user's own files (instantiated by Hydra from conf/data/local.yaml).
    `train` is required; a missing `val` or `test` is split off train."""

    train: str | None = None
    val: str | None = None
    test: str | None = None

    def load(self) -> LabelledData:
        if not self.train:
            raise DataError("data.source.train is required: the path of your training file "
                            "(.csv, .tsv, .jsonl or .parquet); val and test are optional.")
        given = {"train": self.train, "val": self.val, "test": self.test}
        files = {s: Path(f) for s, f in given.items() if f}
        parts = {s: read_rows(read_table(path), str(path), self, id_prefix=path.stem,
                              line_offset=LINE_OFFSETS[path.suffix.lower()])
                 for s, path in files.items()}
        return assemble(parts, self, ", ".join(f"{s}={p}" for s, p in files.items()))


@dataclass
class HubText(TableOptions):
    """A text-classification dataset from the HF hub (e.g. stanfordnlp/imdb), same column options.

    `splits` maps ours (train, val, test) to the dataset's; null, or a default name the dataset
    lacks, splits that one off train. Label names come from a ClassLabel feature when present.
    """

    name: str
    config: str | None = None
    splits: dict[str, str | None] | None = None

    def load(self) -> LabelledData:
        import datasets

        try:
            ds = datasets.load_dataset(self.name, self.config)
        except Exception as e:  # offline, unknown name, hub outage: all end the same way
            raise DataError(
                f"Could not load {self.name!r} (config {self.config}) from the Hugging Face hub "
                f"({type(e).__name__}: {e}). The hub may be unreachable or the name wrong. To "
                f"train on your own files instead: data=local data.source.train=train.csv "
                f"(.csv/.tsv/.jsonl/.parquet; val and test files optional).") from e
        asked, parts, class_names = dict(self.splits or {}), {}, None
        for ours, theirs in {**HUB_SPLITS, **asked}.items():
            if theirs is not None and theirs not in ds and (ours == "train" or ours in asked):
                raise DataError(f"{self.name} has no split {theirs!r}; it has {list(ds)}. Set "
                                f"splits.{ours} to one of them, or null to split it off train.")
            if theirs is None or theirs not in ds:
                continue
            frame = ds[theirs].to_pandas()
            feature = ds[theirs].features.get(self.label_column)
            feature = getattr(feature, "feature", feature)  # a list's ClassLabel is inside
            if isinstance(feature, datasets.ClassLabel) and self.label_columns is None:
                class_names = feature.names  # ids become names; -1 (unlabelled) becomes missing
                name = dict(enumerate(class_names)).get
                frame[self.label_column] = frame[self.label_column].map(
                    lambda v, name=name: [name(i) for i in v] if _kind(v) == "list" else name(v))
            parts[ours] = read_rows(frame, f"{self.name}[{theirs}]", self, id_prefix=theirs,
                                    line_offset=None)
        source = f"hub:{self.name}" + (f"/{self.config}" if self.config else "")
        data = assemble(parts, replace(self, labels=self.labels or class_names), source)
        if self.labels is None and class_names:
            data.report["label_order"] = "ClassLabel"
        return data
