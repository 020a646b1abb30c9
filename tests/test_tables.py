"""User files (CSV, TSV, JSONL, Parquet) and hub text datasets: label formats, label order,
splitting off val/test, and the error message for each kind of bad input."""

from __future__ import annotations

import json
import logging

import datasets
import numpy as np
import pandas as pd
import pytest

from emotion_lab.data.assembly import split_off
from emotion_lab.data.files import read_table
from emotion_lab.data.hub_text import HubText
from emotion_lab.data.local_files import LocalFiles
from emotion_lab.data.types import DataError, Split


def write(frame: pd.DataFrame, path):
    """Write `frame` in the format its suffix names; return the path."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def write_lines(path, *lines: str):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def reviews(n: int = 100, start: int = 0) -> pd.DataFrame:
    """n reviews, 80% pos and 20% neg, with texts that are unique and tricky for CSV."""
    return pd.DataFrame({
        "text": [f'review {i}, "quoted" and\ttabbed ü' for i in range(start, start + n)],
        "label": ["neg" if i % 5 == 0 else "pos" for i in range(n)],
    })


def load(path, **options):
    return LocalFiles(train=str(path), **options).load()


# ---------------------------------------------------------------- formats


def test_single_label_csv_is_one_hot_with_sorted_names(tmp_path):
    frame = reviews(20)
    files = {s: write(frame, tmp_path / f"{s}.csv") for s in ("train", "val", "test")}
    data = LocalFiles(**{s: str(p) for s, p in files.items()}).load()
    assert data.problem_type == "single_label"
    assert data.label_names == ["neg", "pos"]
    train = data.splits["train"]
    assert train.texts == frame["text"].tolist()
    assert train.labels.dtype == np.float32 and train.labels.shape == (20, 2)
    assert (train.labels.sum(axis=1) == 1).all()
    assert [data.label_names[j] for j in train.labels.argmax(axis=1)] == frame["label"].tolist()
    assert train.ids[:2] == ["train:0", "train:1"] and data.splits["val"].ids[0] == "val:0"
    assert "split_from_train" not in data.report  # val and test files used as they are
    assert data.splits["test"].texts == frame["text"].tolist()


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_as_csv(tmp_path, suffix):
    frame = reviews(50)
    (tmp_path / "csv").mkdir()
    expected = load(write(frame, tmp_path / "csv" / "train.csv"), seed=3)
    got = load(write(frame, tmp_path / f"train{suffix}"), seed=3)
    assert got.label_names == expected.label_names
    assert got.report == expected.report
    for name, split in expected.splits.items():
        assert got.splits[name].texts == split.texts
        assert got.splits[name].ids == split.ids
        np.testing.assert_array_equal(got.splits[name].labels, split.labels)


def test_numbers_as_text_stay_text(tmp_path):
    path = write_lines(tmp_path / "t.csv", "text,label", "42,1", "NA,2", "007,10", "None,2")
    data = load(path, val=str(path), test=str(path))
    assert data.splits["train"].texts == ["42", "NA", "007", "None"]
    assert data.label_names == ["1", "2", "10"]  # integer labels sort as numbers


def test_integer_labels_in_jsonl_sort_as_numbers(tmp_path):
    path = write(pd.DataFrame({"text": list("abcd"), "label": [10, 2, 1, 2]}), tmp_path / "t.jsonl")
    data = load(path, val=str(path), test=str(path))
    assert data.label_names == ["1", "2", "10"]
    assert data.splits["train"].labels.argmax(axis=1).tolist() == [2, 1, 0, 1]


MULTI = pd.DataFrame({"text": ["a", "b", "c", "d"], "id": ["x1", "x2", "x3", "x4"],
                      "label_joy": [1, 0, 0, 1], "label_anger": [0, 1, 0, 1],
                      "label_fear": [0, 0, 0, 1], "other": [5, 5, 5, 5]})
MULTI_HOT = [[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 1]]


@pytest.mark.parametrize("label_columns, names", [
    ("label_", ["joy", "anger", "fear"]),
    (["label_fear", "label_joy", "label_anger"], ["label_fear", "label_joy", "label_anger"]),
])
def test_multi_hot_columns_by_prefix_and_by_list(tmp_path, label_columns, names):
    path = write(MULTI, tmp_path / "t.csv")
    data = load(path, val=str(path), test=str(path), label_columns=label_columns, id_column="id")
    assert data.problem_type == "multi_label"
    assert data.label_names == names  # column order, not sorted
    expected = pd.DataFrame(MULTI_HOT, columns=["joy", "anger", "fear"])
    order = [n.removeprefix("label_") for n in names]
    np.testing.assert_array_equal(data.splits["train"].labels, expected[order].to_numpy())
    assert data.splits["train"].ids == ["x1", "x2", "x3", "x4"]


def test_multi_hot_accepts_bools_and_floats(tmp_path):
    frame = MULTI.assign(label_joy=MULTI["label_joy"].astype(bool),
                         label_anger=MULTI["label_anger"].astype(float))
    path = write(frame, tmp_path / "t.parquet")
    data = load(path, val=str(path), test=str(path), label_columns="label_")
    np.testing.assert_array_equal(data.splits["train"].labels, MULTI_HOT)


def test_jsonl_list_column_is_multi_label(tmp_path):
    rows = [{"text": "a", "label": ["joy", "anger"]}, {"text": "b", "label": []},
            {"text": "c", "label": ["sadness"]}]
    path = write_lines(tmp_path / "t.jsonl", *map(json.dumps, rows))
    data = load(path, val=str(path), test=str(path))
    assert data.problem_type == "multi_label"
    assert data.label_names == ["anger", "joy", "sadness"]
    np.testing.assert_array_equal(data.splits["train"].labels, [[1, 1, 0], [0, 0, 0], [0, 0, 1]])


def test_label_separator_splits_a_quoted_field(tmp_path):
    path = write_lines(tmp_path / "t.csv", "text,label", 'a,"joy, anger"', "b,sadness")
    data = load(path, val=str(path), test=str(path), label_separator=",")
    assert data.problem_type == "multi_label"
    assert data.label_names == ["anger", "joy", "sadness"]
    np.testing.assert_array_equal(data.splits["train"].labels, [[1, 1, 0], [0, 0, 1]])


def test_given_labels_fix_the_order(tmp_path):
    path = write(reviews(10), tmp_path / "t.csv")
    data = load(path, val=str(path), test=str(path), labels=["pos", "neg"])
    assert data.label_names == ["pos", "neg"]
    assert data.splits["train"].labels[0].tolist() == [0.0, 1.0]  # review 0 is neg
    assert data.report["label_order"] == "given"


def test_problem_type_can_be_forced(tmp_path):
    path = write(reviews(10), tmp_path / "t.csv")
    data = load(path, val=str(path), test=str(path), problem_type="multi_label")
    assert data.problem_type == "multi_label" and data.label_names == ["neg", "pos"]
    listed = write_lines(tmp_path / "l.jsonl", '{"text": "a", "label": ["x"]}',
                         '{"text": "b", "label": ["y", "x"]}')
    with pytest.raises(DataError, match=r"l.jsonl, line 2: 2 labels .*exactly one"):
        load(listed, val=str(listed), test=str(listed), problem_type="single_label")


# ---------------------------------------------------------------- splitting


def test_val_and_test_are_split_off_train_stratified_and_disjoint(tmp_path):
    path = write(reviews(200), tmp_path / "train.csv")
    data = load(path, val_fraction=0.1, test_fraction=0.2, seed=1)
    sizes = {name: len(split) for name, split in data.splits.items()}
    assert sizes == {"train": 140, "val": 20, "test": 40}
    assert data.report["split_from_train"] == {"test": 40, "val": 20}
    assert data.report["stratified"] is True
    for split in data.splits.values():  # 80% pos, 20% neg everywhere
        assert split.labels[:, 1].mean() == pytest.approx(0.8)
    texts = [set(split.texts) for split in data.splits.values()]
    assert sum(map(len, texts)) == 200 and len(set.union(*texts)) == 200
    again = load(path, val_fraction=0.1, test_fraction=0.2, seed=1)
    other = load(path, val_fraction=0.1, test_fraction=0.2, seed=2)
    assert again.splits["val"].ids == data.splits["val"].ids
    assert other.splits["val"].ids != data.splits["val"].ids


def test_only_the_missing_split_is_carved(tmp_path):
    train = write(reviews(100), tmp_path / "train.jsonl")
    test = write(reviews(30, start=1000), tmp_path / "test.jsonl")
    data = load(train, test=str(test), val_fraction=0.25)
    assert data.report["split_from_train"] == {"val": 25}
    assert len(data.splits["train"]) == 75
    assert data.splits["test"].ids == [f"test:{i}" for i in range(30)]


def test_split_off_warns_when_a_class_has_one_example(caplog):
    labels = np.eye(3, dtype=np.float32)[[0] * 10 + [1] * 9 + [2]]
    split = Split([str(i) for i in range(20)], labels, [str(i) for i in range(20)])
    with caplog.at_level(logging.WARNING):
        rest, part = split_off(split, 0.25, seed=0, stratify=True, label_names=["a", "b", "rare"])
    assert "'rare'" in caplog.text
    assert (len(rest), len(part)) == (15, 5)
    assert sorted(rest.ids + part.ids, key=int) == split.ids


def test_a_fraction_that_leaves_a_split_empty_is_an_error(tmp_path):
    path = write(reviews(20), tmp_path / "t.csv")
    with pytest.raises(DataError, match="test_fraction=0.0 of 20 training examples"):
        load(path, test_fraction=0.0)


def test_train_is_required():
    with pytest.raises(DataError, match="data.source.train is required"):
        LocalFiles(val="v.csv").load()


# ---------------------------------------------------------------- bad input


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="nope.csv: no such file"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"'\.xlsx'.*\.csv, \.tsv, \.jsonl, \.parquet"):
        read_table(write_lines(tmp_path / "t.xlsx", "x"))


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", b"", "empty.csv: the file is empty"),
    ("blank.jsonl", b"\n \n", "blank.jsonl: the file is empty"),
    ("header.csv", b"text,label\n", "header.csv: no rows"),
    ("latin.csv", "text,label\nok,a\ncaf\xe9,b\n".encode("latin-1"),
     "latin.csv, line 3: not valid UTF-8"),
    ("broken.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": }\n',
     "broken.jsonl, line 2: not valid JSON"),
    ("array.jsonl", b'{"text": "a", "label": "x"}\n["b", "y"]\n',
     "array.jsonl, line 2: expected an object"),
])
def test_unreadable_files(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_table(tmp_path / name)


JSONL_CASES = {
    "missing column": (['{"review": "a", "label": "x"}'], {},
                       r"no column 'text'; the columns are \['review', 'label'\]"),
    "null text": (['{"text": "a", "label": "x"}', '{"text": null, "label": "x"}',
                   '{"text": "  ", "label": "x"}'], {}, r"2 row\(s\) with an empty text: "
                  r".*t.jsonl, line 2; .*t.jsonl, line 3"),
    "number text": (['{"text": "a", "label": "x"}', '{"text": 42, "label": "x"}'], {},
                    r"t.jsonl, line 2: the text is 42 \(int\), not a string"),
    "mixed labels": (['{"text": "a", "label": 1}', '{"text": "b", "label": "pos"}'], {},
                     r"t.jsonl, line 2: column 'label' mixes number and str"),
    "list and scalar": (['{"text": "a", "label": ["x"]}', '{"text": "b", "label": "x"}'], {},
                        r"t.jsonl, line 2: column 'label' mixes list and str"),
    "null label": (['{"text": "a", "label": "x"}', '{"text": "b", "label": null}'], {},
                   r"1 row\(s\) with no label in column 'label': .*t.jsonl, line 2"),
    "unknown label": (['{"text": "a", "label": "x"}', '{"text": "b", "label": "z"}'],
                      {"labels": ["x", "y"]},
                      r"t.jsonl, line 2: unknown label 'z'; the labels are \['x', 'y'\]"),
    "one class": (['{"text": "a", "label": "x"}'], {}, r"at least 2 classes; .*\['x'\]"),
    "not 0/1": (['{"text": "a", "l_x": 1, "l_y": 0}', '{"text": "b", "l_x": 2, "l_y": 0}'],
                {"label_columns": "l_"}, r"t.jsonl, line 2: column 'l_x' holds 2; 0/1 label"),
    "bad problem type": (['{"text": "a", "label": "x"}'], {"problem_type": "multiclass"},
                         "problem_type='multiclass'"),
}


@pytest.mark.parametrize("case", JSONL_CASES)
def test_bad_jsonl_rows(tmp_path, case):
    lines, options, message = JSONL_CASES[case]
    path = write_lines(tmp_path / "t.jsonl", *lines)
    with pytest.raises(DataError, match=message):
        load(path, val=str(path), test=str(path), **options)


def test_unknown_label_names_the_csv_line_and_the_parquet_row(tmp_path):
    frame = reviews(6)
    frame.loc[4, "label"] = "meh"
    for suffix, where in ((".csv", "line 6"), (".parquet", "row 4")):
        path = write(frame, tmp_path / f"t{suffix}")
        with pytest.raises(DataError, match=rf"t\{suffix}, {where}: unknown label 'meh'"):
            load(path, val=str(path), test=str(path), labels=["neg", "pos"])


def test_not_0_1_in_a_csv_column_names_column_and_line(tmp_path):
    path = write(MULTI.assign(label_fear=[0, 0, 0.5, 1]), tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"t.csv, line 4: column 'label_fear' holds '0.5'"):
        load(path, val=str(path), test=str(path), label_columns="label_")


# ---------------------------------------------------------------- hub


def test_hub_failure_says_how_to_use_local_files(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="unreachable") as error:
        HubText("stanfordnlp/imdb").load()
    assert "no network" in str(error.value) and "data=local" in str(error.value)


def test_hub_class_label_names_and_carved_val(monkeypatch):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})

    def part(n: int, prefix: str) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"text": [f"{prefix} {i}" for i in range(n)], "label": [i % 2 for i in range(n)]},
            features=features)

    hub = datasets.DatasetDict({"train": part(40, "train"), "test": part(10, "test")})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: hub)
    data = HubText("stanfordnlp/imdb", val_fraction=0.25).load()
    assert data.label_names == ["neg", "pos"] and data.problem_type == "single_label"
    assert data.report["split_from_train"] == {"val": 10}
    assert data.report["label_order"] == "ClassLabel"
    assert (len(data.splits["train"]), len(data.splits["val"])) == (30, 10)
    assert all(text.startswith("train") for text in data.splits["val"].texts)
    assert data.splits["test"].texts == [f"test {i}" for i in range(10)]
    assert data.splits["test"].labels.argmax(axis=1).tolist() == [i % 2 for i in range(10)]


def test_a_row_with_more_fields_than_the_header_is_refused(tmp_path):
    # unquoted, the comma splits the text: pandas would make "Thanks" an index and keep
    # only " really" as the text, silently
    path = write_lines(tmp_path / "t.csv", "text,label", '"fine, quoted",joy',
                       "Thanks, really,gratitude")
    with pytest.raises(DataError, match=r"t.csv, line 3: 3 fields, but the header has 2"):
        read_table(path)
    write_lines(path, "text,label", '"fine, quoted",joy', '"multi\nline",joy', "a,b,c")
    with pytest.raises(DataError, match="line 5: 3 fields"):  # physical line, after a newline
        read_table(path)
    write_lines(path, "text,label", '"Thanks, really",gratitude')
    assert read_table(path)["text"].tolist() == ["Thanks, really"]
