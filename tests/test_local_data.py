"""data=local: a user's own files train end to end, single-label (softmax, cross-entropy,
accuracy; thresholds do not apply) and multi-label."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from conftest import compose_train_cfg
from test_cli import run_cli

from emotion_lab.data.types import DataError
from emotion_lab.inference import predict_probs
from emotion_lab.models.saving import load_model
from emotion_lab.rundir import load_arrays, read_json
from emotion_lab.train import train

# single-token words of MiniLM's uncased vocabulary, one set per class
CUES = {"negative": ["terrible", "awful", "boring"], "neutral": ["okay", "average", "fine"],
        "positive": ["great", "wonderful", "brilliant"]}
FILLER = ["the", "movie", "was", "plot", "acting", "really", "quite", "this", "film"]


def reviews(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(CUES)[i % 3]
        words = [rng.choice(CUES[label]), *rng.sample(FILLER, 4)]
        rng.shuffle(words)
        rows.append({"review": " ".join(words), "sentiment": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "reviews.csv"
    reviews(240, seed=7).to_csv(path, index=False)
    return path


def local_cfg(path, run_dir, *extra):
    return compose_train_cfg("null", run_dir, "data=local", f"data.source.train={path}",
                             "data.source.text_column=review",
                             "data.source.label_column=sentiment", "trainer.max_epochs=5",
                             "model.head.pooling=mean", *extra)


@pytest.fixture(scope="module")
def single_label_run(reviews_csv, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single_run")
    metrics, objects = train(local_cfg(reviews_csv, run_dir))
    return run_dir, metrics, objects


def test_single_label_csv_trains_end_to_end(single_label_run):
    run_dir, metrics, objects = single_label_run
    assert metrics["problem_type"] == "single_label"
    assert metrics["threshold_policy"] == "argmax"
    assert json.loads((run_dir / "label_map.json").read_text()) == {
        "0": "negative", "1": "neutral", "2": "positive"}
    # 240 rows: 24 test and 24 val split off, stratified (8 of each class)
    test_probs, test_labels = load_arrays(run_dir, "test")
    assert test_labels.sum(0).tolist() == [8, 8, 8]
    np.testing.assert_allclose(test_probs.sum(1), 1.0, rtol=1e-5)  # softmax
    accuracy = (test_probs.argmax(1) == test_labels.argmax(1)).mean()
    assert metrics["test/accuracy"] == pytest.approx(accuracy)
    assert metrics["test/accuracy"] > 0.8  # each review names its class with a cue word
    assert metrics["test/macro_f1"] > metrics["test/macro_f1_frequency_baseline"] + 0.3
    assert "test/macro_f1_at_0.3" not in metrics  # fixed thresholds do not apply
    assert set(read_json(run_dir / "thresholds.json").values()) == {None}
    report = read_json(run_dir / "data_report.json")
    assert report["source_report"]["split_from_train"] == {"test": 24, "val": 24}


def test_single_label_model_round_trip_uses_softmax(single_label_run, reviews_csv):
    run_dir, _, objects = single_label_run
    model, tokenizer, spec = load_model(run_dir / "model")
    assert spec["problem_type"] == "single_label"
    texts = objects["datamodule"].splits["test"].texts
    probs = predict_probs(model, tokenizer, texts, single_label=True)
    np.testing.assert_allclose(probs, load_arrays(run_dir, "test")[0], atol=1e-5)


def test_multi_label_jsonl_list_column_trains(tmp_path):
    rng = random.Random(3)
    with (tmp_path / "train.jsonl").open("w", encoding="utf-8") as f:
        for i in range(150):
            labels = sorted({list(CUES)[i % 3], rng.choice(list(CUES))})
            words = [rng.choice(CUES[lab]) for lab in labels] + rng.sample(FILLER, 3)
            f.write(json.dumps({"text": " ".join(words), "tags": labels}) + "\n")
    metrics, objects = train(compose_train_cfg(
        "null", tmp_path / "run", "data=local", f"data.source.train={tmp_path / 'train.jsonl'}",
        "data.source.label_column=tags"))
    assert metrics["problem_type"] == "multi_label" and metrics["threshold_policy"] == "per_label"
    assert objects["datamodule"].label_names == ["negative", "neutral", "positive"]
    assert "test/macro_f1_at_0.3" in metrics and "test/accuracy" not in metrics


def test_cli_single_label_says_thresholds_do_not_apply(reviews_csv, tmp_path):
    result = run_cli("backbone=tiny", "data=local", f"data.source.train={reviews_csv}",
                     "data.source.text_column=review", "data.source.label_column=sentiment",
                     "threshold=global", "logger=none", "trainer.accelerator=cpu",
                     "++trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path / 'run'}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "threshold=global does not apply" in result.stdout + result.stderr


def test_cli_missing_column_lists_the_columns_found(reviews_csv, tmp_path):
    result = run_cli("backbone=tiny", "data=local", f"data.source.train={reviews_csv}",
                     "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    output = result.stdout + result.stderr  # Hydra's log handler writes to stdout
    assert "no column 'text'" in output and "'review', 'sentiment'" in output
    assert "Traceback" not in result.stderr


def test_local_data_with_an_unprepared_dir_says_so(reviews_csv, tmp_path):
    cfg = local_cfg(reviews_csv, tmp_path / "run", f"data.dir={tmp_path}")
    with pytest.raises(DataError, match="not a prepared directory"):
        train(cfg)
