"""Distillation: teacher files matched to the training texts by text, averaged, mixed into
the training targets only; a text without a teacher score, a missing label or a score that
is not a probability is an error that names the file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import EMOTIONS, compose_config, compose_train_cfg

from emotion_lab.data.distill import distilled_targets, teacher_probabilities
from emotion_lab.data.types import DataError
from emotion_lab.errors import ConfigError
from emotion_lab.predict import run as predict_cli
from emotion_lab.prepare import prepare
from emotion_lab.rundir import read_json
from emotion_lab.train import train

LABELS = ["joy", "anger", "fear"]


def write_scores(path, texts, scores, fmt=None):
    frame = pd.DataFrame({"text": texts, "id": range(len(texts))})
    if fmt == "jsonl":  # the predict face's .jsonl: one {label: score} object a row
        frame["scores"] = [dict(zip(LABELS, map(float, row), strict=True)) for row in scores]
        frame.to_json(path, orient="records", lines=True)
        return path
    for j, label in enumerate(LABELS):
        frame[f"score_{label}"] = scores[:, j]
    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path)
    return path


def test_teachers_are_matched_by_text_and_averaged(tmp_path):
    texts = ["a b", "c", "d e f", "c"]  # a repeated text gets its score twice
    one = np.array([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], [0.9, 0.0, 1.0]])
    two = np.array([[0.3, 0.4, 0.5], [0.7, 0.1, 0.9], [0.1, 0.2, 0.0]])
    # shuffled rows, an extra text, csv and jsonl: order and format do not matter
    first = write_scores(tmp_path / "one.csv", ["d e f", "extra", "a b", "c"],
                         np.vstack([one[2], [0, 0, 0], one[0], one[1]]))
    second = write_scores(tmp_path / "two.jsonl", ["c", "a b", "d e f"],
                          np.vstack([two[1], two[0], two[2]]), fmt="jsonl")
    got = teacher_probabilities([first, second], texts, LABELS)
    mean = (one + two) / 2
    np.testing.assert_allclose(got, mean[[0, 1, 2, 1]], atol=1e-6)
    labels = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    np.testing.assert_allclose(distilled_targets(labels, got, 0.25),
                               0.75 * labels + 0.25 * got, atol=1e-6)
    np.testing.assert_array_equal(distilled_targets(labels, got, 0.0), labels)


@pytest.mark.parametrize("make, message", [
    (lambda p: write_scores(p, ["a"], np.array([[0.1, 0.2, 0.3]])),
     r"no score for 1 of the 2 training texts \(for example 'b'\)"),
    (lambda p: write_scores(p, ["a", "b"], np.array([[0.1, 0.2, 0.3], [0.1, 1.5, 0.3]])),
     "row 1: a score is missing or outside"),
    (lambda p: pd.DataFrame({"text": ["a", "b"], "score_joy": [0.1, 0.2]}).to_parquet(p) or p,
     "lacks 2 of the 3 label scores"),
    (lambda p: pd.DataFrame({"body": ["a", "b"]}).to_parquet(p) or p, "no 'text' column"),
])
def test_bad_teacher_files_are_named(tmp_path, make, message):
    path = make(tmp_path / "teacher.parquet")
    with pytest.raises(DataError, match=message) as error:
        teacher_probabilities([path], ["a", "b"], LABELS)
    assert "teacher.parquet" in str(error.value)


def test_prepare_predict_then_train_a_student_on_teacher_probabilities(goemotions_dir,
                                                                       tmp_path):
    """The documented path: prepare writes the training texts, predict scores them with a
    teacher run, the student trains on labels mixed with those scores."""
    teacher = tmp_path / "teacher"
    train(compose_train_cfg(goemotions_dir, teacher))
    prepared = tmp_path / "prepared"
    prepare(compose_config(f"data.dir={goemotions_dir}", f"out_dir={prepared}",
                           config_name="prepare"))
    scores = tmp_path / "teacher_train.parquet"
    predict_cli([f"run_dir={teacher}", f"input={prepared / 'train.parquet'}",
                 f"output={scores}", "all_scores=true"])

    student = tmp_path / "student"
    _, objects = train(compose_train_cfg(goemotions_dir, student,
                                         f"data.distill.teachers=[{scores},{scores}]",
                                         "data.distill.weight=0.3"))
    datamodule = objects["datamodule"]
    hard = datamodule.splits["train"].labels
    table = pd.read_parquet(scores).drop_duplicates("text")  # .parquet: a `scores` object
    by_text = dict(zip(table["text"], table["scores"], strict=True))
    probs = np.array([[by_text[t][e] for e in EMOTIONS] for t in datamodule.splits["train"].texts])
    np.testing.assert_allclose(datamodule.tokenized["train"].labels.numpy(),
                               0.7 * hard + 0.3 * probs, atol=1e-5)
    # validation and test keep their labels: thresholds and scores mean what they did
    np.testing.assert_array_equal(datamodule.tokenized["val"].labels.numpy(),
                                  datamodule.splits["val"].labels)
    report = read_json(student / "data_report.json")
    assert report["distill"]["weight"] == 0.3 and len(report["distill"]["teachers"]) == 2
    assert report["distill"]["examples"] == len(hard)
    assert json.loads((student / "metrics.json").read_text())["test/macro_f1"] >= 0


def test_a_weight_outside_0_1_is_named(goemotions_dir, tmp_path):
    with pytest.raises(ConfigError, match="data.distill.weight"):
        train(compose_train_cfg(goemotions_dir, tmp_path / "run", "data.distill.weight=1.5",
                                "debug=fdr"))


def test_a_missing_teacher_file_is_named_before_training(goemotions_dir, tmp_path):
    with pytest.raises(DataError, match="nowhere.parquet"):
        train(compose_train_cfg(goemotions_dir, tmp_path / "run",
                                f"data.distill.teachers=[{tmp_path / 'nowhere.parquet'}]",
                                "debug=fdr"))
