"""Label taxonomies: the shipped mappings, grouping labels and probabilities by max."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EMOTIONS

from emotion_lab.data.goemotions import packaged_release
from emotion_lab.data.taxonomy import (
    apply_taxonomy,
    available,
    group_matrix,
    group_max,
    load_mapping,
)
from emotion_lab.data.types import DataError, LabelledData, Split
from emotion_lab.evaluation.grouped import evaluate_grouped
from emotion_lab.evaluation.thresholds import fixed

EKMAN = ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]


def test_shipped_taxonomies_cover_the_27_emotions_once():
    assert available() == ["original", "ekman", "sentiment"]
    for name, groups in (("ekman", EKMAN), ("sentiment",
                                            ["positive", "negative", "ambiguous", "neutral"])):
        names, matrix = group_matrix(EMOTIONS, load_mapping(name))
        assert names == groups
        np.testing.assert_array_equal(matrix.sum(axis=1), np.ones(len(EMOTIONS)))
        assert matrix[EMOTIONS.index("neutral"), names.index("neutral")] == 1


def test_shipped_mappings_equal_the_release_files():
    release = packaged_release()
    for name in ("ekman", "sentiment"):
        assert load_mapping(name) == json.loads(
            (release / f"{name}_mapping.json").read_text(encoding="utf-8"))


def test_group_is_max_of_members():
    names, matrix = group_matrix(EMOTIONS, load_mapping("ekman"))
    probs = np.zeros((2, len(EMOTIONS)), dtype=np.float32)
    probs[0, EMOTIONS.index("annoyance")] = 0.7   # anger group
    probs[0, EMOTIONS.index("anger")] = 0.2
    probs[0, EMOTIONS.index("gratitude")] = 0.4  # joy group
    probs[1, EMOTIONS.index("neutral")] = 0.9
    grouped = group_max(probs, matrix)
    assert grouped.shape == (2, 7)
    np.testing.assert_allclose(grouped[0], [0.7, 0, 0, 0.4, 0, 0, 0])
    np.testing.assert_allclose(grouped[1], [0, 0, 0, 0, 0, 0, 0.9])


def data_with(labels: np.ndarray, names: list[str]) -> LabelledData:
    split = Split([f"t{i}" for i in range(len(labels))], labels, [str(i) for i in
                                                                  range(len(labels))])
    return LabelledData({"train": split, "val": split, "test": split}, names)


def test_apply_taxonomy_maps_multi_hot_labels():
    labels = np.zeros((3, len(EMOTIONS)), dtype=np.float32)
    labels[0, [EMOTIONS.index("fear"), EMOTIONS.index("nervousness")]] = 1
    labels[1, [EMOTIONS.index("joy"), EMOTIONS.index("sadness")]] = 1
    labels[2, EMOTIONS.index("neutral")] = 1
    grouped = apply_taxonomy(data_with(labels, EMOTIONS), "ekman")
    assert grouped.label_names == EKMAN
    np.testing.assert_array_equal(grouped.splits["train"].labels,
                                  [[0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0],
                                   [0, 0, 0, 0, 0, 0, 1]])
    assert apply_taxonomy(grouped, "ekman") is grouped  # prepared with ekman already
    assert apply_taxonomy(grouped, "original") is grouped


def test_unknown_taxonomy_lists_choices():
    with pytest.raises(DataError, match="ekman"):
        load_mapping("plutchik")


def test_mapping_file_with_foreign_labels_is_refused(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"good": ["joy", "elation"]}), encoding="utf-8")
    with pytest.raises(DataError, match="elation"):
        apply_taxonomy(data_with(np.zeros((1, len(EMOTIONS)), np.float32), EMOTIONS),
                       str(path))


def test_custom_mapping_file_keeps_unmapped_labels(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"happy": ["joy", "love"]}), encoding="utf-8")
    names, _ = group_matrix(["joy", "love", "anger"], load_mapping(str(path)))
    assert names == ["happy", "anger"]


def test_grouped_evaluation_fits_thresholds_and_names_metrics():
    rng = np.random.default_rng(0)
    labels = (rng.random((200, len(EMOTIONS))) < 0.1).astype(np.float32)
    probs = np.clip(labels * 0.6 + rng.random(labels.shape) * 0.5, 0, 1).astype(np.float32)
    summary, rows = evaluate_grouped({"val": probs, "test": probs},
                                     {"val": labels, "test": labels}, EMOTIONS,
                                     ["ekman", "sentiment"], lambda p, y: fixed(p, y, 0.5))
    assert {"val/ekman/macro_f1", "test/sentiment/macro_pr_auc"} <= set(summary)
    assert [r["label"] for r in rows["test/ekman"]] == EKMAN
    # a group is positive when any member is: support counts examples, not member labels
    _, matrix = group_matrix(EMOTIONS, load_mapping("ekman"))
    assert rows["test/ekman"][0]["support"] == int(group_max(labels, matrix)[:, 0].sum())


def test_grouped_evaluation_skips_foreign_and_grouped_labels():
    probs = np.full((4, 7), 0.5, dtype=np.float32)
    labels = np.eye(7, dtype=np.float32)[[0, 1, 2, 3]]
    summary, rows = evaluate_grouped({"val": probs, "test": probs},
                                     {"val": labels, "test": labels}, EKMAN,
                                     ["ekman", "sentiment"], lambda p, y: fixed(p, y))
    assert summary == {} and rows == {}
