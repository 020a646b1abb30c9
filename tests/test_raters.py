"""read_rater_files: examples rebuilt from rater-level CSVs written here in the raw format."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from emotion_lab.data.raters import REQUIRED, read_rater_files
from emotion_lab.data.types import DataError

LABELS = ["joy", "anger", "sadness", "neutral"]
HEADER = REQUIRED + LABELS

# (id, text, [(very_unclear, labels chosen by that rater), ...]): one tuple per rater row.
EXAMPLES = [
    ("e1", 'He said "wow, great" and left', [(False, ["joy"]), (False, ["joy", "anger"]),
                                             (False, ["neutral"])]),
    ("e2", "Sad, really, so sad", [(False, ["sadness"]), (False, ["sadness"]),
                                   (False, ["sadness", "anger"])]),
    ("e3", "What is \"this\", even?", [(False, ["joy"]), (True, []), (False, ["joy"])]),
    ("e4", "all over, the place", [(False, ["joy"]), (False, ["anger"]),
                                   (False, ["sadness"])]),
    ("e5", "It's fine, I guess", [(False, ["neutral"]), (False, ["neutral"]),
                                  (False, ["neutral"]), (False, ["joy"])]),
]


def rater_rows(examples=EXAMPLES) -> list[list[str]]:
    rows = []
    for k, (comment_id, text, raters) in enumerate(examples):
        for r, (unclear, chosen) in enumerate(raters):
            rows.append([text, comment_id, f"author{k}", "AskReddit", f"t3_{k}", f"t1_{k}",
                         f"{1548000000 + k}.0", str(r), str(unclear)]
                        + ["1" if name in chosen else "0" for name in LABELS])
    return rows


def write_raw(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    """A raw GoEmotions rater file: quoted CSV with a header, one rater annotation a row."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def by_id(data) -> dict[str, tuple[str, list[str]]]:
    """Every kept example across the splits: id -> (text, label names)."""
    out = {}
    for split in data.splits.values():
        for text, labels, comment_id in zip(split.texts, split.labels, split.ids, strict=True):
            out[comment_id] = (text, [data.label_names[i] for i in np.flatnonzero(labels)])
    return out


@pytest.fixture
def raw(tmp_path) -> Path:
    return write_raw(tmp_path / "goemotions_1.csv", rater_rows())


def test_labels_kept_by_agreement(raw):
    data, _ = read_rater_files([raw], val_fraction=0, test_fraction=0)
    examples = by_id(data)
    assert examples["e1"] == ('He said "wow, great" and left', ["joy"])  # anger, neutral: 1 of 3
    assert examples["e2"][1] == ["sadness"]
    assert examples["e5"][1] == ["neutral"]
    assert data.label_names == LABELS and data.problem_type == "multi_label"
    assert data.splits["train"].labels.dtype == np.float32
    assert data.splits["train"].labels.shape == (3, len(LABELS))


def test_min_agreement_one_keeps_single_votes(raw):
    data, report = read_rater_files([raw], min_agreement=1, val_fraction=0, test_fraction=0)
    examples = by_id(data)
    assert examples["e1"][1] == ["joy", "anger", "neutral"]
    assert examples["e4"][1] == ["joy", "anger", "sadness"]
    assert "e3" not in examples  # very unclear whatever the agreement
    assert report["dropped_no_agreement"] == 0 and report["kept"] == 4


def test_report_counts_and_drops(raw):
    data, report = read_rater_files([raw], seed=3)
    assert set(by_id(data)) == {"e1", "e2", "e5"}  # e3: one very-unclear rater; e4: no agreement
    assert report == {
        "files": [str(raw)], "rater_rows": 16, "examples": 5, "raters_per_example_mean": 3.2,
        "dropped_very_unclear": 1, "dropped_no_agreement": 1, "kept": 3, "min_agreement": 2,
        "split_seed": 3, "split_sizes": {"train": 3, "val": 0, "test": 0},
    }
    assert data.report == report and data.source == "raters:goemotions_1.csv"
    json.dumps(report)


def many_examples(n: int, offset: int = 0) -> list:
    return [(f"id{offset + k:03d}", f'text {offset + k}, "quoted"',
             [(False, [LABELS[k % 4]]), (False, [LABELS[k % 4]]), (False, ["joy"])])
            for k in range(n)]


def split_ids(data) -> dict[str, list[str]]:
    return {name: split.ids for name, split in data.splits.items()}


def test_split_reproducible_and_disjoint(tmp_path):
    rows_a, rows_b = rater_rows(many_examples(30)), rater_rows(many_examples(30, offset=30))
    a = write_raw(tmp_path / "goemotions_1.csv", rows_a)
    b = write_raw(tmp_path / "goemotions_2.csv", rows_b)
    shuffled = rows_a + rows_b
    random.Random(0).shuffle(shuffled)
    c = write_raw(tmp_path / "shuffled.csv", shuffled)

    data, report = read_rater_files([a, b], seed=7)
    assert report["rater_rows"] == 180 and report["kept"] == 60
    assert report["split_sizes"] == {"train": 48, "val": 6, "test": 6}
    assert data.source == "raters:goemotions_1.csv,goemotions_2.csv"
    ids = split_ids(data)
    assert split_ids(read_rater_files([b, a], seed=7)[0]) == ids
    assert split_ids(read_rater_files([c], seed=7)[0]) == ids
    assert split_ids(read_rater_files([a, b], seed=8)[0]) != ids
    everything = ids["train"] + ids["val"] + ids["test"]
    assert len(set(everything)) == len(everything) == 60
    assert set(everything) == {f"id{k:03d}" for k in range(60)}
    assert all(part == sorted(part) for part in ids.values())  # id order within a split
    train = data.splits["train"]  # texts and labels stay aligned with their ids
    k = int(train.ids[0][2:])
    assert train.texts[0] == f'text {k}, "quoted"'
    assert list(train.labels[0]) == [float(i == k % 4) for i in range(4)]


def test_very_unclear_as_1_0(tmp_path, raw):
    column = HEADER.index("example_very_unclear")
    rows = rater_rows()
    for row in rows:
        row[column] = {"True": "1", "False": "0"}[row[column]]
    ones = write_raw(tmp_path / "ones.csv", rows)
    assert by_id(read_rater_files([ones])[0]) == by_id(read_rater_files([raw])[0])
    rows[2][column] = "maybe"
    bad = write_raw(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match="bad.csv, line 4, column 'example_very_unclear'"):
        read_rater_files([bad])


def test_missing_column_lists_found(tmp_path):
    header = [c for c in HEADER if c != "rater_id"]
    rows = [row[:7] + row[8:] for row in rater_rows()]
    path = write_raw(tmp_path / "raw.csv", rows, header)
    with pytest.raises(DataError, match="missing columns \\['rater_id'\\]") as e:
        read_rater_files([path])
    assert "Found ['text', 'id'" in str(e.value) and "'neutral']" in str(e.value)


def test_columns_must_match_across_files(tmp_path, raw):
    header = HEADER[:-1] + ["calm"]
    other = write_raw(tmp_path / "goemotions_2.csv", rater_rows(), header)
    with pytest.raises(DataError, match="goemotions_2.csv: columns .* differ"):
        read_rater_files([raw, other])


def test_label_value_not_binary_names_line(tmp_path):
    rows = rater_rows()
    rows[4][HEADER.index("sadness")] = "2"
    path = write_raw(tmp_path / "raw.csv", rows)
    with pytest.raises(DataError, match="raw.csv, line 6, column 'sadness'.*got '2'"):
        read_rater_files([path])


def test_differing_texts_for_one_id(tmp_path):
    rows = rater_rows()
    rows[1][0] = "something else"  # a second row of e1
    path = write_raw(tmp_path / "raw.csv", rows)
    with pytest.raises(DataError, match="id 'e1' has differing texts"):
        read_rater_files([path])


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        read_rater_files([empty])
    header_only = write_raw(tmp_path / "header.csv", [])
    with pytest.raises(DataError, match="header.csv: the file is empty"):
        read_rater_files([header_only])
    with pytest.raises(DataError, match="not found"):
        read_rater_files([tmp_path / "nope.csv"])


@pytest.mark.parametrize("kwargs", [{"min_agreement": 0}, {"val_fraction": 1.0},
                                    {"test_fraction": -0.1},
                                    {"val_fraction": 0.5, "test_fraction": 0.5}])
def test_bad_arguments(raw, kwargs):
    with pytest.raises(ValueError):
        read_rater_files([raw], **kwargs)
