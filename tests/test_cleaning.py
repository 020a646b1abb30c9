"""Cleaning rules: each off by default, each counted; known answers on hand-made splits."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_lab.data.cleaning import REMOVED, clean, is_spam, is_url_only
from emotion_lab.data.types import DataError, LabelledData, Split

NAMES = ["joy", "anger", "neutral"]
JOY, ANGER, NEUTRAL = np.eye(3, dtype=np.float32)


def split(rows: list[tuple[str, np.ndarray]], prefix: str) -> Split:
    return Split([t for t, _ in rows], np.stack([y for _, y in rows]),
                 [f"{prefix}{i}" for i in range(len(rows))])


def data(train, val, test) -> LabelledData:
    return LabelledData({"train": split(train, "tr"), "val": split(val, "va"),
                         "test": split(test, "te")}, NAMES)


TRAIN = [("so happy today", JOY), ("so happy today", JOY), ("so happy today", ANGER),
         ("ok", NEUTRAL), ("https://example.com", NEUTRAL), ("www.spam.biz !!", NEUTRAL),
         ("buy buy buy buy now buy", NEUTRAL), ("it is a table", NEUTRAL),
         ("the weather is fine", NEUTRAL), ("I am furious", ANGER)]
VAL = [("I am furious", ANGER), ("I  AM furious", ANGER), ("a new text here", JOY)]
TEST = [("so happy today", JOY), ("something else entirely", NEUTRAL)]


def test_nothing_is_dropped_by_default_but_duplicates_and_leakage_are_counted():
    cleaned, report = clean(data(TRAIN, VAL, TEST), None)
    assert [len(s) for s in cleaned.splits.values()] == [10, 3, 2]
    assert all(report[s]["removed"] == dict.fromkeys(REMOVED, 0) for s in report)
    assert report["train"]["found"] == {"duplicates": 2, "duplicates_label_conflicts": 1}
    assert report["val"]["found"]["leakage"] == 1          # "I am furious"
    assert report["val"]["found"]["leakage_normalized"] == 2  # also "I  AM furious"
    assert report["test"]["found"]["leakage"] == 1
    assert report["train"]["read"] == report["train"]["kept"] == 10


def test_each_rule_removes_what_it_says():
    cleaned, report = clean(data(TRAIN, VAL, TEST), {
        "min_chars": 3, "drop_url_only": True, "drop_spam": True, "dedupe": True,
        "drop_leakage": True})
    removed = report["train"]["removed"]
    assert removed["too_short"] == 1      # "ok"
    assert removed["url_only"] == 2       # a bare URL; a URL with punctuation
    assert removed["spam"] == 1           # buy x5 of 6 words
    assert removed["duplicates"] == 2     # the first "so happy today" stays
    assert cleaned.splits["train"].texts.count("so happy today") == 1
    assert cleaned.splits["train"].labels[cleaned.splits["train"].texts.index(
        "so happy today")].tolist() == JOY.tolist()
    assert report["val"]["removed"]["leakage"] == 1 and report["test"]["removed"]["leakage"] == 1
    assert "I am furious" not in cleaned.splits["val"].texts
    for name, s in cleaned.splits.items():
        assert report[name]["kept"] == len(s) == report[name]["read"] - sum(
            report[name]["removed"].values())
        assert len(s.ids) == len(s.texts) == len(s.labels)


def test_min_words():
    cleaned, report = clean(data(TRAIN, VAL, TEST), {"min_words": 3})
    assert report["train"]["removed"]["too_short"] == 3  # "ok", a URL, "www.spam.biz !!"
    assert "www.spam.biz !!" not in cleaned.splits["train"].texts


def test_neutral_downsampling_reaches_the_share_in_train_only():
    rows = [(f"n{i}", NEUTRAL) for i in range(80)] + [(f"j{i}", JOY) for i in range(20)]
    both = np.array([1, 0, 1], dtype=np.float32)  # neutral with another label: not "only"
    rows.append(("mixed", both))
    cleaned, report = clean(data(rows, rows, rows), {"neutral_share": 0.2}, seed=3)
    train = cleaned.splits["train"]
    neutral_only = [(y == NEUTRAL).all() for y in train.labels]
    assert sum(neutral_only) == 5  # 0.2 * 21 / 0.8
    assert "mixed" in train.texts
    assert report["train"]["removed"]["neutral_downsampled"] == 75
    assert len(cleaned.splits["val"]) == len(rows)  # evaluation splits untouched
    again, _ = clean(data(rows, rows, rows), {"neutral_share": 0.2}, seed=3)
    assert again.splits["train"].texts == train.texts  # seeded
    other, _ = clean(data(rows, rows, rows), {"neutral_share": 0.2}, seed=4)
    assert other.splits["train"].texts != train.texts


def test_rule_errors_are_clear():
    with pytest.raises(DataError, match="unknown rule"):
        clean(data(TRAIN, VAL, TEST), {"min_length": 3})
    with pytest.raises(DataError, match="between 0 and 1"):
        clean(data(TRAIN, VAL, TEST), {"neutral_share": 1.5})
    with pytest.raises(DataError, match="neutral_label"):
        clean(data(TRAIN, VAL, TEST), {"neutral_share": 0.2, "neutral_label": "none"})
    with pytest.raises(DataError, match="empty"):
        clean(data(TRAIN, VAL, TEST), {"min_chars": 1000})


@pytest.mark.parametrize(("text", "url_only", "spam"), [
    ("https://a.b/c", True, False),
    ("see https://a.b/c", False, False),
    ("http://a.b http://c.d http://e.f wow", False, True),
    ("no no no no no no no no", False, True),
    ("no no no yes maybe fine", False, False),
    ("😂😂😂", False, False),
])
def test_url_and_spam_rules(text, url_only, spam):
    assert is_url_only(text) is url_only
    assert is_spam(text) is spam
