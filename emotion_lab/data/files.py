"""Reading one table file (CSV, TSV, JSONL, Parquet) into a DataFrame, with errors that name
the file and line: training reads the user's labelled files with it, predict its inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from emotion_lab.data.types import DataError

# Messages point at "line n" where a file has lines (CSV/TSV count the header), else at "row i".
LINE_OFFSETS = {".csv": 2, ".tsv": 2, ".jsonl": 1, ".parquet": None}


def decode_text(path: Path) -> str:
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
    for lineno, line in enumerate(decode_text(path).rstrip().split("\n"), start=1):
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
        text, sep = decode_text(path), "\t" if suffix == ".tsv" else ","
        _check_field_counts(path, text, sep)
        try:
            frame = pd.read_csv(io.StringIO(text), sep=sep, index_col=False,
                                dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DataError(f"{path}: cannot be read as {suffix[1:].upper()} ({e}).") from e
    if len(frame) == 0:
        raise DataError(f"{path}: no rows, only a header; expected one row per example.")
    return frame
