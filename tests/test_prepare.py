"""python -m emotion_lab.prepare: Parquet splits, label map, frequencies, report; training
reads the prepared directory; taxonomies at training and evaluation time."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import EMOTIONS, compose_config, compose_train_cfg

from emotion_lab.data.goemotions import read_release_dir
from emotion_lab.data.prepared import read_prepared
from emotion_lab.prepare import prepare
from emotion_lab.train import train


def prepare_cfg(data_dir, out_dir, *extra):
    return compose_config(f"data.dir={data_dir}", f"out_dir={out_dir}", *extra,
                          config_name="prepare")


@pytest.fixture(scope="module")
def prepared(goemotions_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    report = prepare(prepare_cfg(goemotions_dir, out))
    return out, report


def test_prepare_writes_every_file(prepared, goemotions_dir):
    out, report = prepared
    for name in ("train.parquet", "val.parquet", "test.parquet", "label_map.json",
                 "label_frequencies.csv", "label_frequencies.png", "prepare_report.json"):
        assert (out / name).is_file(), name
    release = read_release_dir(goemotions_dir)
    train = pd.read_parquet(out / "train.parquet")
    assert list(train.columns) == ["id", "text", *[f"label_{n}" for n in EMOTIONS]]
    assert train["text"].tolist() == release.splits["train"].texts
    np.testing.assert_array_equal(train.iloc[:, 2:].to_numpy(), release.splits["train"].labels)
    assert json.loads((out / "label_map.json").read_text()) == {
        str(i): n for i, n in enumerate(EMOTIONS)}
    on_disk = json.loads((out / "prepare_report.json").read_text())
    assert on_disk == report
    assert on_disk["splits"]["val"]["read"] == on_disk["splits"]["val"]["kept"] == 60
    assert on_disk["problem_type"] == "multi_label" and on_disk["taxonomy"] == "original"


def test_label_frequencies_table(prepared, goemotions_dir):
    out, _ = prepared
    table = pd.read_csv(out / "label_frequencies.csv")
    assert table["label"].tolist() == EMOTIONS
    labels = read_release_dir(goemotions_dir).splits["test"].labels
    np.testing.assert_array_equal(table["test_count"], labels.sum(0))
    np.testing.assert_allclose(table["test_share"], labels.mean(0), atol=1e-6)


def test_prepared_directory_reads_back_identically(prepared, goemotions_dir):
    out, _ = prepared
    back, release = read_prepared(out), read_release_dir(goemotions_dir)
    assert back.label_names == release.label_names
    for name in ("train", "val", "test"):
        assert back.splits[name].texts == release.splits[name].texts
        assert back.splits[name].ids == release.splits[name].ids
        np.testing.assert_array_equal(back.splits[name].labels, release.splits[name].labels)


def test_prepare_applies_rules_and_taxonomy(goemotions_dir, tmp_path):
    report = prepare(prepare_cfg(goemotions_dir, tmp_path, "data.taxonomy=ekman",
                                 "data.clean.min_chars=25"))
    assert report["labels"][-1] == "neutral" and len(report["labels"]) == 7
    train = report["splits"]["train"]
    assert train["removed"]["too_short"] > 0
    assert train["kept"] == train["read"] - sum(train["removed"].values())
    assert len(pd.read_parquet(tmp_path / "train.parquet")) == train["kept"]
    assert pd.read_csv(tmp_path / "label_frequencies.csv")["label"].tolist() == report["labels"]


def test_prepare_downsamples_neutral_only_examples(goemotions_dir, tmp_path):
    labels = read_release_dir(goemotions_dir).splits["train"].labels
    neutral_only = int(((labels[:, -1] == 1) & (labels.sum(1) == 1)).sum())
    assert neutral_only > 0
    # a share this small keeps none of them
    report = prepare(prepare_cfg(goemotions_dir, tmp_path, "data.clean.neutral_share=0.001"))
    assert report["splits"]["train"]["removed"]["neutral_downsampled"] == neutral_only
    assert report["splits"]["val"]["removed"]["neutral_downsampled"] == 0


def test_training_reads_the_prepared_directory(prepared, tmp_path):
    out, _ = prepared
    metrics, objects = train(compose_train_cfg(out, tmp_path / "run"))
    assert objects["datamodule"].data.source == f"prepared:{out}"
    assert metrics["num_labels"] == len(EMOTIONS)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["source"] == f"prepared:{out}"


def test_training_on_ekman_reports_ekman_level_metrics(goemotions_dir, tmp_path):
    metrics, _ = train(compose_train_cfg(goemotions_dir, tmp_path / "run",
                                         "data.taxonomy=ekman"))
    run = tmp_path / "run"
    assert metrics["taxonomy"] == "ekman" and metrics["num_labels"] == 7
    assert list(json.loads((run / "label_map.json").read_text()).values()) == [
        "anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
    assert np.load(run / "test_labels.npy").shape[1] == 7
    assert not any("/ekman/" in k or "/sentiment/" in k for k in metrics)  # already grouped


def test_original_run_also_reports_grouped_levels(goemotions_dir, tmp_path):
    metrics, _ = train(compose_train_cfg(goemotions_dir, tmp_path / "run"))
    for level in ("ekman", "sentiment"):
        for split in ("val", "test"):
            assert 0 <= metrics[f"{split}/{level}/macro_f1"] <= 1
    off, _ = train(compose_train_cfg(goemotions_dir, tmp_path / "run2",
                                     "data.eval_taxonomies=[]"))
    assert not any("/ekman/" in k for k in off)


def test_prepare_from_rater_files(tmp_path):
    from test_raters import EXAMPLES, rater_rows, write_raw

    # 20 copies of the five examples under new ids: enough for an 80/10/10 split
    examples = [(f"{cid}_{k}", f"{text} #{k}", raters)
                for k in range(20) for cid, text, raters in EXAMPLES]
    raw = write_raw(tmp_path / "goemotions_1.csv", rater_rows(examples))
    report = prepare(compose_config(f"data.source.rater_files=[{raw}]", "data.dir=null",
                                    f"out_dir={tmp_path / 'out'}", config_name="prepare"))
    raters = report["source_report"]
    # per copy: e3 has a very-unclear rater, e4 has no label two raters agree on
    assert raters["dropped_very_unclear"] == 20 and raters["dropped_no_agreement"] == 20
    assert raters["kept"] == 60
    sizes = {s: report["splits"][s]["kept"] for s in ("train", "val", "test")}
    assert sizes == raters["split_sizes"] and sum(sizes.values()) == 60
    back = read_prepared(tmp_path / "out")
    assert back.label_names == ["joy", "anger", "sadness", "neutral"]


def test_prepare_local_single_label_reads_back_single_label(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": [f"review {i}" for i in range(40)],
                  "label": ["good", "bad"] * 20}).to_csv(path, index=False)
    report = prepare(compose_config("data=local", f"data.source.train={path}",
                                    f"out_dir={tmp_path / 'out'}", config_name="prepare"))
    assert report["problem_type"] == "single_label"
    back = read_prepared(tmp_path / "out")
    assert back.problem_type == "single_label" and back.label_names == ["bad", "good"]
    assert [len(back.splits[s]) for s in ("train", "val", "test")] == [32, 4, 4]
