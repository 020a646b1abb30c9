"""Exports of tiny trained runs: an HF directory the pipeline loads with the same scores,
ONNX matching PyTorch, int8, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import compose_train_cfg

from emotion_lab.export import ONNX_TOLERANCE, ExportError, load_onnx, run
from emotion_lab.inference.predictor import EmotionClassifier
from emotion_lab.rundir import read_json
from emotion_lab.train import train

pytest.importorskip("onnxruntime", reason='pip install -e ".[export]"')

TEXTS = ["so happy and grateful", "furious rage", "the table", "hug, thanks, sorry"]


@pytest.fixture(scope="module")
def runs(goemotions_dir, tmp_path_factory):
    """LoRA with HF's head (tiny: CLS pooling) and per-label temperatures; LoRA with our own
    mean-pooling head."""
    root = tmp_path_factory.mktemp("export")
    train(compose_train_cfg(goemotions_dir, root / "cls", "adapter=lora",
                            "calibration=per_label"))
    train(compose_train_cfg(goemotions_dir, root / "mean", "adapter=lora",
                            "model.head.pooling=mean", "calibration=global"))
    return root


def test_hf_export_loads_in_the_pipeline_with_the_same_scores(runs, tmp_path):
    from transformers import pipeline

    out = tmp_path / "hf"
    report = run([f"run_dir={runs / 'cls'}", "format=hf", f"out={out}"])
    assert report["pipeline_max_abs_diff"] < 1e-5
    assert not (out / "adapter_config.json").exists()  # LoRA merged: a plain HF model
    config = json.loads((out / "config.json").read_text())
    clf = EmotionClassifier.from_run(runs / "cls", precision="fp32")
    assert list(config["id2label"].values()) == clf.labels
    assert config["emotion_lab"]["thresholds"] == read_json(runs / "cls" / "thresholds.json")
    assert config["emotion_lab"]["temperatures_folded"] != [1.0] * 28  # there was something
    pipe = pipeline("text-classification", model=str(out), top_k=None,
                    function_to_apply="sigmoid")
    theirs = np.array([[{d["label"]: d["score"] for d in row}[n] for n in clf.labels]
                       for row in pipe(TEXTS)])
    np.testing.assert_allclose(theirs, clf.scores(TEXTS), atol=1e-5)


def test_hf_export_refuses_our_own_head(runs, tmp_path):
    with pytest.raises(ExportError, match="format=onnx"):
        run([f"run_dir={runs / 'mean'}", "format=hf", f"out={tmp_path / 'hf'}"])


def test_onnx_export_matches_pytorch_and_quantizes(runs, tmp_path):
    out = tmp_path / "onnx"
    report = run([f"run_dir={runs / 'mean'}", "format=onnx", f"out={out}", "quantize=true"])
    assert report["max_abs_diff_vs_pytorch"] <= ONNX_TOLERANCE
    assert set(report["test_macro_f1"]) == {"pytorch", "onnx", "onnx_int8"}
    assert report["test_macro_f1"]["onnx"] == pytest.approx(report["test_macro_f1"]["pytorch"],
                                                            abs=1e-3)
    clf = EmotionClassifier.from_run(runs / "mean", precision="fp32")
    onnx = load_onnx(out)
    np.testing.assert_allclose(onnx.scores(TEXTS), clf.scores(TEXTS), atol=ONNX_TOLERANCE)
    for a, b in zip(onnx.predict(TEXTS), clf.predict(TEXTS), strict=True):
        assert [e["label"] for e in a["emotions"]] == [e["label"] for e in b["emotions"]]
    int8 = load_onnx(out, "model.int8.onnx")
    assert int8.scores(TEXTS).shape == (len(TEXTS), 28)
    assert (out / "model.int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size


def test_export_names_what_is_missing(tmp_path):
    from emotion_lab.errors import CliError
    from emotion_lab.rundir import RunDirError

    with pytest.raises(RunDirError, match="thresholds.json: missing"):
        run([f"run_dir={tmp_path}", "format=onnx"])
    with pytest.raises(CliError, match="format=tflite: expected one of onnx, hf"):
        run([f"run_dir={tmp_path}", "format=tflite"])
