"""Cleaning by meaning (data.clean.label_issues, data.clean.outliers): on a small data set
written here, with label flips and off-topic texts planted, the plants rank first; the rules
are off by default, touch training only, are counted in the report, refuse bad settings in one
line; prepare writes the review file and its figure."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config

from emotion_lab.cli import check_overrides
from emotion_lab.data.cleaning import REMOVED, clean
from emotion_lab.data.meaning import flag
from emotion_lab.data.types import DataError, LabelledData, Split

NAMES = ["joy", "anger", "sadness", "fear", "neutral"]
CUES = {"joy": ["happy", "glad", "delighted"], "anger": ["furious", "angry", "outraged"],
        "sadness": ["sad", "heartbroken", "crying"], "fear": ["scared", "terrified", "afraid"],
        "neutral": ["fine", "okay", "ordinary"]}
THINGS = ["the party", "my exam", "the news", "our trip", "the game", "my job", "the movie",
          "this weekend", "the meeting", "my sister", "the weather", "the concert"]
TEMPLATES = ["I am so {cue} about {thing}", "{thing} is making me feel {cue}",
             "honestly {cue} after {thing}", "I feel really {cue} about {thing}",
             "still {cue} because of {thing}"]
OFF_TOPIC = [  # no word shared with anything else: far from every other text
    "Torque specification: tighten carburetor flange bolts crosswise, 9 newton metres.",
    "Quarterly VAT filings require ledger reconciliation before submission deadlines.",
    "Mitochondrial ribosomes translate thirteen polypeptides encoded locally.",
    "Kubernetes pods schedule onto nodes via kubelet admission webhooks.",
]
PER_LABEL, FLIPS = 40, 8


def text_of(rng: random.Random, label: str) -> str:
    return rng.choice(TEMPLATES).format(cue=rng.choice(CUES[label]), thing=rng.choice(THINGS))


def planted(seed: int = 0) -> tuple[LabelledData, set[str], set[str]]:
    """(data, ids of the flipped training labels, ids of the off-topic training texts)."""
    rng = random.Random(seed)
    rows = [(text_of(rng, name), j) for j, name in enumerate(NAMES) for _ in range(PER_LABEL)]
    rng.shuffle(rows)
    labels = np.zeros((len(rows) + len(OFF_TOPIC), len(NAMES)), np.float32)
    for i, (_, j) in enumerate(rows):
        labels[i, j] = 1
    flipped = rng.sample(range(len(rows)), FLIPS)
    for i in flipped:  # a wrong label instead of the true one
        labels[i] = 0
        labels[i, (rows[i][1] + rng.randrange(1, len(NAMES))) % len(NAMES)] = 1
    texts = [t for t, _ in rows] + OFF_TOPIC
    labels[len(rows):, NAMES.index("neutral")] = 1
    ids = [f"tr{i}" for i in range(len(texts))]
    evaluation = {name: Split([text_of(rng, n) for n in NAMES] + OFF_TOPIC[:1],
                              np.eye(len(NAMES), dtype=np.float32)[[0, 1, 2, 3, 4, 4]],
                              [f"{name}{i}" for i in range(6)]) for name in ("val", "test")}
    data = LabelledData({"train": Split(texts, labels, ids), **evaluation}, NAMES)
    return data, {ids[i] for i in flipped}, set(ids[len(rows):])


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A cheap, offline stand-in for the backbone: word counts over the texts' vocabulary."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer().fit_transform(texts).toarray()


ON = {"label_issues": {"enabled": True, "folds": 5, "max_share": None},
      "outliers": {"enabled": True, "k": 5, "quantile": 0.98}}


def first(flags, split: Split, score: str, n: int) -> set[str]:
    """The ids of the n training examples ranked first: lowest label quality, or farthest."""
    order = np.argsort(flags.scores[score] * (-1 if score == "outlier_distance" else 1),
                      kind="stable")
    return {split.ids[i] for i in order[:n]}


def assert_plants_rank_first(embed, slack: int = 0) -> None:
    """Every flip among the first FLIPS (+ slack) by label quality, the off-topic texts
    first by distance."""
    data, flips, off_topic = planted()
    train = data.splits["train"]
    flags = flag(train, NAMES, ON, embed, seed=0)
    assert flips <= first(flags, train, "label_quality", FLIPS + slack)
    assert first(flags, train, "outlier_distance", len(OFF_TOPIC)) == off_topic
    assert off_topic <= {r["id"] for r in flags.review if "outlier" in r["reason"]}
    flagged = {r["id"] for r in flags.review if "label_issue" in r["reason"]}
    assert len(flips & flagged) >= FLIPS - 1  # cleanlab's per-label cut-offs may spare one
    top = flags.review[0]  # the review file's first row: the worst label
    assert top["id"] in flips and top["reason"].startswith("label_issue")
    assert top["suggested_labels"] and top["suggested_labels"] != top["given_labels"]


def test_planted_flips_and_off_topic_texts_rank_first():
    assert_plants_rank_first(bag_of_words)


def test_clean_removes_them_from_training_only_and_counts_them():
    data, flips, off_topic = planted()
    review: list[dict] = []
    cleaned, report = clean(data, ON, seed=0, embed=bag_of_words, review=review)
    train = report["train"]
    assert train["removed"]["outliers"] == train["found"]["outliers"] >= len(off_topic)
    assert train["removed"]["label_issues"] >= FLIPS
    assert train["kept"] == train["read"] - sum(train["removed"].values())
    removed = set(data.splits["train"].ids) - set(cleaned.splits["train"].ids)
    assert removed == {r["id"] for r in review if r["removed"]}
    assert off_topic <= removed and len(flips & removed) >= FLIPS - 1
    assert len(removed - flips - off_topic) <= 4  # a few true labels the model doubts
    for name in ("val", "test"):  # an off-topic text sits in val and test: never touched
        assert cleaned.splits[name].texts == data.splits[name].texts
        assert report[name]["removed"]["outliers"] == report[name]["removed"]["label_issues"] == 0
    assert {"outliers", "label_issues"} <= set(REMOVED)
    json.dumps(report)  # the report stays JSON


def test_max_share_removes_the_lowest_quality_first():
    data, flips, _ = planted()
    rules = {"label_issues": {"enabled": True, "max_share": 0.02}}
    review: list[dict] = []
    cleaned, report = clean(data, rules, embed=bag_of_words, review=review)
    cap = int(0.02 * len(data.splits["train"]))
    assert report["train"]["removed"]["label_issues"] == cap
    assert report["train"]["found"]["label_issues"] >= cap
    removed = {r["id"] for r in review if r["removed"]}
    assert len(removed) == cap and removed <= flips


def test_off_by_default_changes_nothing_and_needs_no_embedding():
    data, _, _ = planted()
    calls = []
    cleaned, report = clean(data, None, embed=lambda texts: calls.append(texts))
    assert not calls
    for name in ("train", "val", "test"):
        assert cleaned.splits[name].ids == data.splits[name].ids
        assert report[name]["removed"]["label_issues"] == report[name]["removed"]["outliers"] == 0


def test_without_an_embedding_the_rule_says_where_it_runs():
    data, _, _ = planted()
    with pytest.raises(DataError, match="python -m emotion_lab.prepare"):
        clean(data, {"outliers": {"enabled": True}})


@pytest.mark.parametrize(("rules", "says"), [
    ({"label_issues": {"enabled": True, "folds": 1}}, "label_issues.folds=1"),
    ({"label_issues": {"max_share": 1.5}}, "label_issues.max_share=1.5"),
    ({"outliers": {"quantile": 1}}, "outliers.quantile=1"),
    ({"outliers": {"k": 0}}, "outliers.k=0"),
    ({"outliers": {"enabled": "yes"}}, "outliers.enabled=yes"),
    ({"outliers": {"neighbours": 5}}, "unknown setting(s) ['neighbours']"),
])
def test_bad_settings_are_refused_by_name(rules, says):
    data, _, _ = planted()
    with pytest.raises(DataError) as refused:
        clean(data, rules, embed=bag_of_words)
    assert says in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(("override", "says"), [
    ("data.clean.label_issues.folds=1", "data.clean.label_issues.folds=1: expected an integer"),
    ("data.clean.label_issues.max_share=0", "data.clean.label_issues.max_share=0: expected"),
    ("data.clean.outliers.quantile=1.5", "data.clean.outliers.quantile=1.5: expected"),
    ("data.clean.outliers.k=0", "data.clean.outliers.k=0: expected an integer >= 1"),
    ("data.clean.outliers.enabled=maybe", "data.clean.outliers.enabled=maybe: expected true"),
])
def test_the_prepare_face_refuses_bad_settings_in_one_line(override, says, capsys):
    with pytest.raises(SystemExit) as done:
        check_overrides("prepare", [override])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_prepare_writes_the_review_file_and_figure(goemotions_dir, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from emotion_lab.data.goemotions import read_release_dir
    from emotion_lab.models import sentence_embeddings
    from emotion_lab.prepare import prepare

    out = tmp_path / "prepared"
    cfg = compose_config(f"data.dir={goemotions_dir}", f"out_dir={out}", "backbone=tiny",
                         f"cache_dir={tmp_path / 'cache'}", "data.clean.outliers.enabled=true",
                         "data.clean.outliers.quantile=0.9",
                         "data.clean.label_issues.enabled=true", "data.clean.label_issues.folds=2",
                         config_name="prepare")
    report = prepare(cfg)
    train = report["splits"]["train"]
    review = pd.read_csv(out / "flagged.csv", keep_default_na=False)
    assert list(review.columns) == ["id", "text", "given_labels", "suggested_labels", "reason",
                                    "label_quality", "outlier_distance", "removed"]
    assert (review["reason"].str.contains("outlier")).sum() == train["found"]["outliers"] > 0
    assert review["removed"].sum() == train["read"] - train["kept"]
    assert (out / "flagged_per_label.png").stat().st_size > 1000
    assert len(pd.read_parquet(out / "train.parquet")) == train["kept"]
    for name in ("val", "test"):
        assert report["splits"][name]["read"] == report["splits"][name]["kept"]
    assert json.loads((out / "prepare_report.json").read_text()) == report
    # the embeddings sit in the frozen head's feature cache: read back without the backbone
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 1
    monkeypatch.setattr(sentence_embeddings, "load_backbone", lambda *a, **k: 1 / 0)
    embed = sentence_embeddings.SentenceEmbedder(
        OmegaConf.to_container(cfg.backbone, resolve=True), tmp_path / "cache")
    texts = read_release_dir(goemotions_dir).splits["train"].texts
    assert embed(texts).shape == (len(texts), 32)


def test_real_minilm_embeddings_find_the_plants_too(tmp_path):
    """The packaged MiniLM on ~200 texts: the same plants rank first by meaning (the
    flips within the first 10: MiniLM reads "okay about the game" as not quite neutral)."""
    from omegaconf import OmegaConf

    from emotion_lab.models.sentence_embeddings import SentenceEmbedder

    backbone = OmegaConf.to_container(compose_config(config_name="prepare").backbone,
                                      resolve=True)
    start = time.perf_counter()
    assert_plants_rank_first(SentenceEmbedder(backbone, tmp_path), slack=2)
    assert time.perf_counter() - start < 60
