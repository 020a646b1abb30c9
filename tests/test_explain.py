"""Occlusion explanations on a tiny trained run: the scores are what they claim to be."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import EMOTIONS, compose_train_cfg

from emotion_lab.cli import CliError
from emotion_lab.explain import Explainer, ExplainError, run
from emotion_lab.inference.occlusion import words_of
from emotion_lab.train import train


def test_words_drop_stopwords_but_keep_negations_and_contractions():
    words = [w for w, _, _ in words_of("I am not happy, and I can't hide it! [NAME]")]
    assert words == ["not", "happy", ",", "can't", "hide", "!", "[NAME]"]
    text = "so the table"
    assert [text[s:e] for _, s, e in words_of(text, keep_stopwords=True)] == ["so", "the", "table"]


@pytest.fixture(scope="module")
def run_dir(goemotions_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "run"
    train(compose_train_cfg(goemotions_dir, out, "calibration=global"))
    return out


def test_importance_is_the_probability_drop_in_one_forward_pass(run_dir, monkeypatch):
    explainer = Explainer(run_dir)
    calls = []
    forward = explainer.model.forward
    monkeypatch.setattr(explainer.model, "forward",
                        lambda *a, **k: calls.append(k["input_ids"].shape) or forward(*a, **k))
    text = "so happy and grateful, thanks for the hug"
    result = explainer.explain(text, ["joy", "gratitude"])
    assert len(calls) == 1 and calls[0][0] == 1 + len(words_of(text))  # text + variants
    calls.clear()
    for emotion in ("joy", "gratitude"):
        j = EMOTIONS.index(emotion)
        scored = result["emotions"][emotion]
        full = explainer.probabilities([text])[0, j]
        assert scored["probability"] == pytest.approx(full, abs=1e-6)
        for w in scored["words"]:
            without = explainer.probabilities([text[:w["start"]] + text[w["end"]:]])[0, j]
            assert w["importance"] == pytest.approx(full - without, abs=1e-5)
    assert [w["word"] for w in result["emotions"]["joy"]["words"]] == [
        "happy", "grateful", ",", "thanks", "hug"]


def test_default_emotions_are_the_predicted_ones(run_dir):
    explainer = Explainer(run_dir)
    result = explainer.explain("furious and annoying")
    assert list(result["emotions"]) == result["predicted"] and result["predicted"]
    probs = np.array([result["probabilities"][e] for e in EMOTIONS])
    passed = [e for e, p, t in zip(EMOTIONS, probs, explainer.thresholds, strict=True) if p >= t]
    assert result["predicted"] == (passed or [EMOTIONS[int(probs.argmax())]])


def test_mask_occlusion_uses_the_mask_token(run_dir):
    explainer = Explainer(run_dir)
    result = explainer.explain("thanks a lot", ["gratitude"], occlusion="mask")
    first = result["emotions"]["gratitude"]["words"][0]
    j = EMOTIONS.index("gratitude")
    full, masked = explainer.probabilities(["thanks a lot", "[MASK] a lot"])[:, j]
    assert first["word"] == "thanks" and first["importance"] == pytest.approx(full - masked,
                                                                              abs=1e-5)


def test_cli_single_text_and_batch_mode(run_dir, tmp_path):
    written = run([f"run_dir={run_dir}", "text=thanks, you are brilliant: a=b", f"out={tmp_path}",
                   "emotion=gratitude,admiration"])
    assert {p.name for p in written} == {"text.json", "text_gratitude.png",
                                         "text_admiration.png"}
    assert json.loads((tmp_path / "text.json").read_text())["text"].endswith(": a=b")

    batch = tmp_path / "batch"
    written = run([f"run_dir={run_dir}", "emotion=joy,anger", "n=2", f"out={batch}"])
    results = [json.loads(p.read_text()) for p in written if p.suffix == ".json"]
    chosen = [e for r in results for e in r["emotions"]]
    assert sorted(chosen) == ["anger", "anger", "joy", "joy"]
    labels = np.load(run_dir / "test_labels.npy")
    for r in results:  # each explained example carries the emotion it was chosen for
        assert all(labels[r["test_index"], EMOTIONS.index(e)] == 1 for e in r["emotions"])
    assert all(p.stat().st_size > 5_000 for p in written if p.suffix == ".png")


def test_bad_input_gets_a_message(run_dir, tmp_path):
    with pytest.raises(ExplainError, match="admiration, amusement"):
        run([f"run_dir={run_dir}", "text=hi", "emotion=happiness"])
    with pytest.raises(ExplainError, match="empty"):
        run([f"run_dir={run_dir}", "text=   "])
    with pytest.raises(CliError, match="key one of"):
        run([f"run_dir={run_dir}", "txt=hi"])
    done = subprocess.run([sys.executable, "-m", "emotion_lab.explain", f"run_dir={tmp_path}",
                           "text=hi"], capture_output=True, text=True)
    assert done.returncode == 2 and "thresholds.json: missing" in done.stderr
    assert "Traceback" not in done.stderr
