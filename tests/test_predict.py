"""Applying a run: the Python predictor, the predict command, and the HTTP service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import EMOTIONS, compose_train_cfg

from emotion_lab.inference.occlusion import explain_text
from emotion_lab.inference.predictor import EmotionClassifier, PredictError
from emotion_lab.predict import run as predict_cli
from emotion_lab.rundir import load_arrays, read_json
from emotion_lab.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from screenshot import analyze_in_page, browser, find_chromium, serving  # noqa: E402


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


@pytest.mark.parametrize(("call", "says"), [
    (lambda c: c.predict(5), "texts=5: give a string or a list of strings, not int"),
    (lambda c: c.predict(None), "texts=None: give a string or a list of strings, not NoneType"),
    (lambda c: c.predict({"a": "b"}), "texts={'a': 'b'}: give a string or a list of strings"),
    (lambda c: c.predict([1, 2]), "texts: item(s) [0, 1] are not strings (first is int)"),
    (lambda c: c.scores(5), "texts=5: give a string"),
    (lambda c: c.score(None), "texts=None: give a string"),
    (lambda c: c.probabilities([1, 2]), "texts: item(s) [0, 1] are not strings"),
    (lambda c: c.probabilities({"a": "b"}), "texts={'a': 'b'}: give a string"),
    (lambda c: c.predict("ok", top_k=0), "top_k=0: must be a whole number of at least 1"),
    (lambda c: c.predict("ok", top_k=1.5), "top_k=1.5: must be a whole number"),
    (lambda c: c.predict("ok", top_k="3"), "top_k='3': must be a whole number"),
    (lambda c: c.predict("ok", threshold=-0.1), "threshold=-0.1: must be a number strictly "
                                                "between 0 and 1"),
    (lambda c: c.predict("ok", threshold=1.5), "threshold=1.5: must be a number"),
    (lambda c: c.predict("ok", threshold="0.5"), "threshold='0.5': must be a number"),
    (lambda c: c.probabilities(["ok"], batch_size=0), "batch_size=0: must be a whole number "
                                                      "of at least 1"),
    (lambda c: c.score(["ok"], batch_size=-3), "batch_size=-3: must be a whole number"),
])
def test_the_python_api_names_a_bad_argument(clf, call, says):
    with pytest.raises(PredictError) as raised:
        call(clf)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_bad_batch_size_is_refused_when_loading(run_dir):
    with pytest.raises(PredictError, match=r"batch_size=0: must be a whole number of at least 1"):
        EmotionClassifier.from_run(run_dir, batch_size=0)


def test_texts_may_come_as_a_tuple_an_array_or_a_series(clf):
    expected = clf.predict(["so happy", "rage"])
    assert clf.predict(("so happy", "rage")) == expected
    assert clf.predict(np.array(["so happy", "rage"])) == expected
    assert clf.predict(pd.Series(["so happy", "rage"], index=[7, 9])) == expected


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


@pytest.mark.slow
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

    return TestClient(create_app(clf, max_chars=200, max_batch=4, max_words=30))


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


def test_service_explains_words_as_the_occlusion_module_does(client, clf):
    text = "so happy and grateful, thanks"
    body = client.post("/explain", json={"text": text, "emotion": "gratitude"}).json()
    assert body == explain_text(clf, text, ["gratitude"])
    words = body["emotions"]["gratitude"]["words"]
    assert [w["word"] for w in words] == ["happy", "grateful", ",", "thanks"]
    assert all(text[w["start"]:w["end"]] == w["word"] for w in words)
    default = client.post("/explain", json={"text": text}).json()
    assert list(default["emotions"]) == default["predicted"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"text": "so happy", "emotion": "happiness"}, 422, "unknown emotion(s) happiness"),
    ({"text": "   "}, 422, "empty"),
    ({"text": "x" * 201}, 413, "longer than 200"),
    ({"text": " ".join(["happy"] * 31)}, 413, "limit is 30"),
    ({"text": "ok", "occlusion": "blur"}, 422, "remove"),
])
def test_service_explain_refuses_with_a_message(client, body, status, message):
    response = client.post("/explain", json=body)
    assert response.status_code == status
    assert message in json.dumps(response.json())


def test_service_serves_the_demo_page(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="text"' in page.text and "/explain" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline


@pytest.fixture(scope="module")
def server(run_dir):
    """`python -m emotion_lab.serve` on a free localhost port: its base URL."""
    pytest.importorskip("uvicorn", reason='pip install -e ".[serve]"')
    with serving(run_dir) as url:
        yield url


def test_real_server_on_localhost(server):
    request = urllib.request.Request(
        f"{server}/analyze", data=json.dumps({"text": "so happy"}).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert "emotions" in json.load(r)


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


# ---------------------------------------------------------------- the demo page, in Chromium


@pytest.fixture(scope="module")
def page(server):
    """Chromium on the demo page. Skipped where chromium or Selenium is missing, except where
    EMOTION_LAB_REQUIRE_BROWSER=1 (CI installs them and sets it)."""
    missing = None if find_chromium() else "chromium and chromium-driver (apt-get install)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "selenium (pip install -e '.[dev]')"
    if missing and os.environ.get("EMOTION_LAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test needs {missing}")
    if missing:
        pytest.skip(f"needs {missing}")
    with browser() as driver:
        yield driver


def words_in_page(driver) -> list[tuple[str, float]]:
    # one script call reads them all: the page may redraw between two WebDriver calls
    words = driver.execute_script(
        "return [...document.querySelectorAll('#highlighted .word')]"
        ".map((w) => [w.textContent, w.dataset.importance]);")
    return [(text, float(importance)) for text, importance in words]


def test_demo_page_shows_emotions_bars_and_highlighted_words(page, server, clf):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    text = "thanks, so happy and grateful for the hug"
    analyze_in_page(page, server, text)
    assert not page.find_element(By.ID, "error").is_displayed()
    expected = clf.predict(text, all_scores=True)[0]
    chips = page.find_elements(By.CSS_SELECTOR, "#emotions .emotion")
    assert [c.get_attribute("data-label") for c in chips] == [
        e["label"] for e in expected["emotions"]]
    names = page.find_elements(By.CSS_SELECTOR, "#bars .name")
    assert sorted(n.get_attribute("data-label") for n in names) == sorted(EMOTIONS)
    marks = {m.find_element(By.XPATH, "..").get_attribute("data-label"):
             float(m.get_attribute("data-threshold"))
             for m in page.find_elements(By.CSS_SELECTOR, "#bars .mark")}
    assert marks == pytest.approx(dict(zip(clf.labels, map(float, clf.thresholds),
                                           strict=True)))
    chosen = Select(page.find_element(By.ID, "emotion")).first_selected_option.text
    best = expected["emotions"][0]["label"] if expected["emotions"] else max(
        expected["scores"], key=expected["scores"].get)
    assert chosen == best

    def importances(emotion: str) -> list[tuple[str, float]]:
        words = explain_text(clf, text, [emotion])["emotions"][emotion]["words"]
        return [(w["word"], pytest.approx(w["importance"], abs=1e-5)) for w in words]

    assert words_in_page(page) == importances(best)
    other = "gratitude" if best != "gratitude" else "joy"
    Select(page.find_element(By.ID, "emotion")).select_by_value(other)
    WebDriverWait(page, 30).until(lambda d: words_in_page(d) == importances(other))


def test_demo_page_shows_api_errors_and_fits_a_phone(page, server):
    from selenium.webdriver.common.by import By

    analyze_in_page(page, server, "   ")
    error = page.find_element(By.ID, "error")
    assert error.is_displayed() and "422" in error.text and "empty" in error.text
    page.set_window_size(390, 844)
    analyze_in_page(page, server, "I am so angry about this, it is not fair at all")
    assert not page.find_element(By.ID, "error").is_displayed()
    assert page.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")
