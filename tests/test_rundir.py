"""Run directories refuse what they cannot read with a one-line message naming the file, what
is wrong and how to fix it (issue 25). The runs here are small fakes: every refusal happens
before a model would be built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emotion_lab.errors import RunDirError
from emotion_lab.inference.predictor import EmotionClassifier, load_onnx
from emotion_lab.models.saving import load_model
from emotion_lab.rundir import RUN_FORMAT, load_arrays, read_metrics, read_spec, write_spec

LABELS = ["joy", "anger"]
SPEC = {"kind": "classifier", "labels": LABELS, "problem_type": "multi_label",
        "backbone": {"model": "nowhere"}, "head": {"type": "hf"}, "temperatures": None}
TRAIN = "python -m emotion_lab.train writes it"


def fake_run(root: Path, spec: dict | None = None, thresholds: dict | None = None) -> Path:
    """A run directory with a model spec, thresholds.json and metrics.json (no weights)."""
    (root / "model").mkdir(parents=True)
    write_spec(root / "model", SPEC if spec is None else spec)
    (root / "thresholds.json").write_text(json.dumps(
        {"joy": 0.5, "anger": 0.4} if thresholds is None else thresholds))
    (root / "metrics.json").write_text(json.dumps({"run_format": RUN_FORMAT,
                                                   "test/macro_f1": 0.5}))
    return root


def refusal(call, *args) -> str:
    with pytest.raises(RunDirError) as raised:
        call(*args)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("file", ["metrics.json", "thresholds.json", "model/emotion_lab.json"])
def test_invalid_json_names_the_file(tmp_path, file):
    run = fake_run(tmp_path / "run")
    (run / file).write_text('{"joy": 0.5,')
    call = read_metrics if file == "metrics.json" else EmotionClassifier.from_run
    message = refusal(call, run)
    assert f"{run / file}: not valid JSON" in message and "Expecting" in message


def test_a_record_that_is_no_json_object(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "metrics.json").write_text("[1, 2]")
    assert "metrics.json: holds a list, not a JSON object" in refusal(read_metrics, run)


def test_metrics_of_another_tool_are_refused(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "metrics.json").write_text('{"eval_loss": 0.3}')
    assert "metrics.json: no test/macro_f1" in refusal(read_metrics, run)


def test_missing_files_name_what_writes_them(tmp_path):
    run = fake_run(tmp_path / "run")
    assert f"test_probs.npy: missing; {TRAIN}" in refusal(load_arrays, run, "test")
    (run / "metrics.json").unlink()
    assert f"metrics.json: missing; {TRAIN}" in refusal(read_metrics, run)
    (run / "thresholds.json").unlink()
    assert f"thresholds.json: missing; {TRAIN}" in refusal(EmotionClassifier.from_run, run)
    (run / "model" / "emotion_lab.json").unlink()
    assert f"emotion_lab.json: missing; {TRAIN}" in refusal(load_model, run / "model")


def test_a_model_folder_of_another_format_is_refused_before_anything_else(tmp_path):
    # passes on the code before issue 25 too: the format check was already there
    run = fake_run(tmp_path / "run", spec={**SPEC, "labels": ["other"]})
    spec_file = run / "model" / "emotion_lab.json"
    spec_file.write_text(json.dumps({**json.loads(spec_file.read_text()), "format": 1}))
    assert "run format 1" in refusal(EmotionClassifier.from_run, run)


@pytest.mark.parametrize(("spec", "says"), [
    ({"kind": "classifier", "labels": LABELS}, "emotion_lab.json: no problem_type, backbone"),
    ({**SPEC, "kind": "generative"}, "emotion_lab.json: no prompt, generation"),
    ({k: v for k, v in SPEC.items() if k != "head"}, "emotion_lab.json: no head"),
    ({**SPEC, "kind": "regressor"}, "emotion_lab.json: kind='regressor' is not a kind"),
    ({**SPEC, "temperatures": [1.0]}, "emotion_lab.json: temperatures hold 1 value(s) for the "
                                      "model's 2 labels"),
    ({**SPEC, "temperatures": [1.0, -2.0]}, "emotion_lab.json: temperature anger=-2.0"),
])
def test_a_model_spec_without_what_loading_needs(tmp_path, spec, says):
    run = fake_run(tmp_path / "run", spec=spec)
    assert says in refusal(load_model, run / "model")
    assert says in refusal(EmotionClassifier.from_run, run)


@pytest.mark.parametrize(("thresholds", "says"), [
    ({"joy": 0.5}, "thresholds.json: thresholds do not match the model's 2 labels (missing: "
                   "anger)"),
    ({"joy": 0.5, "anger": 0.4, "grief": 0.3}, "(not the model's: grief)"),
    ({"joy": 0.5, "anger": None}, "thresholds.json: threshold anger=None"),
    ({"joy": 1.5, "anger": 0.4}, "thresholds.json: threshold joy=1.5"),
    ({"joy": "high", "anger": 0.4}, "thresholds.json: threshold joy='high'"),
    ([0.5, 0.4], "thresholds.json: holds a list, not a JSON object"),
])
def test_thresholds_that_do_not_fit_the_model(tmp_path, thresholds, says):
    run = fake_run(tmp_path / "run", thresholds=thresholds)
    assert says in refusal(EmotionClassifier.from_run, run)


def test_single_label_runs_keep_null_thresholds(tmp_path):
    from emotion_lab.rundir import read_thresholds

    run = fake_run(tmp_path / "run", thresholds={"joy": None, "anger": None})
    assert read_thresholds(run / "thresholds.json", LABELS, single_label=True) == {
        "joy": None, "anger": None}
    assert "joy=None" in refusal(read_thresholds, run / "thresholds.json", LABELS, False)


def test_a_path_that_is_no_run_directory(tmp_path):
    run = fake_run(tmp_path / "run")
    says = {tmp_path / "nowhere": "nowhere: no such directory",
            run / "metrics.json": "metrics.json: a file, not a run directory",
            run / "model": f"model: a run's model folder; give the run directory above it "
                           f"({run})",
            tmp_path: "thresholds.json: missing, as is model/: "}
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "emotion_lab_onnx.json").write_text("{}")
    says[onnx] = "onnx: an ONNX export, not a run directory; load it with load_onnx"
    for path, message in says.items():
        assert message in refusal(EmotionClassifier.from_run, path), path
    assert "give a run directory written by python -m emotion_lab.train" in refusal(
        EmotionClassifier.from_run, tmp_path)


def test_an_onnx_export_without_what_the_predictor_needs(tmp_path):
    meta = tmp_path / "emotion_lab_onnx.json"
    meta.write_text(json.dumps({"labels": LABELS, "thresholds": {"joy": 0.5}}))
    message = refusal(load_onnx, tmp_path)
    assert "emotion_lab_onnx.json: no problem_type, max_length, temperatures" in message
    assert "python -m emotion_lab.export format=onnx" in message
    meta.write_text(json.dumps({"labels": LABELS, "thresholds": {"joy": 0.5},
                                "problem_type": "multi_label", "max_length": 32,
                                "temperatures": None}))
    assert "emotion_lab_onnx.json: thresholds do not match the model's 2 labels (missing: " \
           "anger)" in refusal(load_onnx, tmp_path)
    (tmp_path / "emotion_lab_onnx.json").unlink()
    assert "emotion_lab_onnx.json: missing; python -m emotion_lab.export format=onnx writes " \
           "it" in refusal(load_onnx, tmp_path)


def test_read_spec_alone_still_reads_a_bare_spec(tmp_path):
    write_spec(tmp_path, {"kind": "classifier", "labels": LABELS})
    assert read_spec(tmp_path)["labels"] == LABELS
