"""Applying a run: the Python predictor, the predict command, and the HTTP service."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from conftest import EMOTIONS, compose_train_cfg

from emotion_lab.predict import run as predict_cli
from emotion_lab.predictor import EmotionClassifier, PredictError
from emotion_lab.rundir import load_arrays, read_json
from emotion_lab.train import train


@pytest.fixture(scope="module")
def run_dir(goemotions_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "run"
    train(compose_train_cfg(goemotions_dir, out, "calibration=per_label"))
    return out


@pytest.fixture(scope="module")
def clf(run_dir):
    return EmotionClassifier.from_run(run_dir, batch_size=7)


def test_predictor_reproduces_the_run_and_its_decisions(run_dir, clf):
    texts = read_json(run_dir / "test_texts.json")
    probs, _ = load_arrays(run_dir, "test")  # calibrated: the predictor applies temperatures
    scores = clf.scores(texts)
    np.testing.assert_allclose(scores, probs, atol=1e-5)
    thresholds = np.array(list(read_json(run_dir / "thresholds.json").values()))
    results = clf.predict(texts)
    for result, p in zip(results, scores, strict=True):
        expected = {EMOTIONS[j] for j in np.flatnonzero(p >= thresholds)}
        assert {e["label"] for e in result["emotions"]} == expected
        got = [e["score"] for e in result["emotions"]]
        assert got == sorted(got, reverse=True)


def test_top_k_threshold_and_all_scores(clf):
    text = "thanks, that is brilliant"
    [top] = clf.predict(text, top_k=3, all_scores=True)
    scores = top["scores"]
    assert list(scores) == EMOTIONS
    best3 = sorted(scores, key=scores.get, reverse=True)[:3]
    assert [e["label"] for e in top["emotions"]] == best3
    [low] = clf.predict(text, threshold=0.01)
    assert {e["label"] for e in low["emotions"]} == {k for k, v in scores.items() if v >= 0.01}


def test_bad_items_are_named(clf, caplog):
    with pytest.raises(PredictError, match=r"item\(s\) \[1\] are empty"):
        clf.predict(["fine", "   "])
    with pytest.raises(PredictError, match=r"\[1\] are not strings \(first is int\)"):
        clf.predict(["fine", 3])
    with pytest.raises(PredictError, match="threshold"):
        clf.predict("fine", threshold=1.5)
    long = "so happy " * 12_000  # 108,000 characters: truncated, with a warning
    [result] = clf.predict([long], all_scores=True)
    assert "longer than" in caplog.text
    assert result["scores"] == pytest.approx(clf.predict([long[:clf.max_chars]],
                                                         all_scores=True)[0]["scores"])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_file_carries_columns_through(run_dir, clf, tmp_path, suffix):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "body": ["so happy", "furious, rage",
                                                         "thanks a lot"], "score": [1, 2, 3]})
    source = tmp_path / "in.tsv"
    frame.to_csv(source, sep="\t", index=False)
    out = tmp_path / f"out{suffix}"
    predict_cli([f"run_dir={run_dir}", f"input={source}", "text_column=body",
                 f"output={out}", "all_scores=true"])
    got = (pd.read_csv(out) if suffix == ".csv" else pd.read_json(out, lines=True)
           if suffix == ".jsonl" else pd.read_parquet(out))
    # CSV cells are text: the carried columns keep them as read
    assert list(got["id"]) == ["a", "b", "c"] and list(map(str, got["score"])) == ["1", "2", "3"]
    expected = clf.predict(frame["body"].tolist(), all_scores=True)
    for i, result in enumerate(expected):
        labels = [e["label"] for e in result["emotions"]]
        emotions = got["emotions"][i]
        assert (emotions.split(",") if suffix == ".csv" and isinstance(emotions, str)
                else [] if suffix == ".csv" else list(emotions)) == labels
    if suffix == ".csv":
        assert got["score_joy"].tolist() == pytest.approx([r["scores"]["joy"] for r in expected],
                                                          abs=1e-6)
    assert not list(tmp_path.glob(".*partial"))


def test_predict_file_refusals_leave_no_output(run_dir, tmp_path):
    from emotion_lab.data.types import DataError

    out = tmp_path / "out.jsonl"
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\nbad \xff byte\n")
    with pytest.raises(DataError, match="line 3: not valid UTF-8"):
        predict_cli([f"run_dir={run_dir}", f"input={bad}", f"output={out}"])
    table = tmp_path / "t.csv"
    table.write_text("body\nhello\n\nworld\n", encoding="utf-8")
    with pytest.raises(DataError, match="no column 'text'; its columns are body"):
        predict_cli([f"run_dir={run_dir}", f"input={table}", f"output={out}"])
    table.write_text('body\nhello\n"  "\nworld\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3: empty text"):
        predict_cli([f"run_dir={run_dir}", f"input={table}", "text_column=body",
                     f"output={out}"])
    assert not out.exists()
    predict_cli([f"run_dir={run_dir}", f"input={table}", "text_column=body",
                 f"output={out}", "skip_empty=true"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["body"] for r in rows] == ["hello", "  ", "world"] and rows[1]["emotions"] == []


def test_predict_cli_messages(run_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "emotion_lab.predict", f"run_dir={run_dir}",
                           "text=thanks, you are brilliant: a=b"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed["text"] == "thanks, you are brilliant: a=b" and "emotions" in printed
    (tmp_path / "run").mkdir()
    done = subprocess.run([sys.executable, "-m", "emotion_lab.predict",
                           f"run_dir={tmp_path / 'run'}", "text=hi"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "thresholds.json: missing" in done.stderr
    assert "Traceback" not in done.stderr
    no_weights = tmp_path / "no_weights"
    shutil.copytree(run_dir, no_weights)
    (no_weights / "model" / "model.safetensors").unlink()
    done = subprocess.run([sys.executable, "-m", "emotion_lab.predict", f"run_dir={no_weights}",
                           "text=hi"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "model.safetensors" in done.stderr, done.stderr[-2000:]


# ---------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def client(clf):
    pytest.importorskip("fastapi", reason='pip install -e ".[serve]"')
    from fastapi.testclient import TestClient

    from emotion_lab.serve import create_app

    return TestClient(create_app(clf, max_chars=200, max_batch=4))


def test_service_answers(client, clf):
    assert client.get("/health").json()["status"] == "ok"
    labels = client.get("/labels").json()
    assert labels["labels"] == EMOTIONS and len(labels["thresholds"]) == 28
    one = client.post("/analyze", json={"text": "so happy", "all_scores": True}).json()
    assert one == clf.predict("so happy", all_scores=True)[0]
    many = client.post("/analyze", json={"text": ["so happy", "rage"], "top_k": 2}).json()
    assert [len(r["emotions"]) for r in many["results"]] == [2, 2]
    assert "/analyze" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"text": ["a"] * 5}, 413, "limit is 4"),
    ({"text": "x" * 201}, 413, "longer than 200"),
    ({"text": "  "}, 422, "empty"),
    ({"text": ["ok", 5]}, 422, "not strings"),
    ({"text": {"a": 1}}, 422, "string or a list"),
    ({"text": "ok", "threshold": 2}, 422, "less than 1"),
])
def test_service_refuses_with_a_message(client, body, status, message):
    response = client.post("/analyze", json=body)
    assert response.status_code == status
    assert message in json.dumps(response.json())


def test_real_server_on_localhost(run_dir):
    pytest.importorskip("uvicorn", reason='pip install -e ".[serve]"')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "emotion_lab.serve", f"run_dir={run_dir}",
                               f"port={port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    assert json.load(r)["status"] == "ok"
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                time.sleep(0.5)
        else:
            pytest.fail("the server did not come up in 60 s")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/analyze", data=json.dumps({"text": "so happy"}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert "emotions" in json.load(r)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_predict_an_empty_file_says_so(run_dir, tmp_path):
    from emotion_lab.data.types import DataError

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt: the file is empty"):
        predict_cli([f"run_dir={run_dir}", f"input={empty}", f"output={tmp_path / 'o.jsonl'}"])
    with pytest.raises(DataError, match="no such file"):
        predict_cli([f"run_dir={run_dir}", f"input={tmp_path / 'nope.csv'}",
                     f"output={tmp_path / 'o.jsonl'}"])
    assert not (tmp_path / "o.jsonl").exists()
