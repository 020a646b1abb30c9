"""Every face answers bad arguments with one line, `error: ...`, and exit code 2: never a
traceback. The faces that apply a run are driven in-process (their `run` under the same
`run_face` guard as `python -m`), so a stray exception fails the test with its traceback."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest import compose_train_cfg

from emotion_lab import explain, export, predict, report, serve
from emotion_lab.cli import run_face
from emotion_lab.train import train

FACES = {"predict": predict, "serve": serve, "explain": explain, "export": export,
         "report": report}


@pytest.fixture(scope="module")
def run_dir(goemotions_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("faces") / "run"
    train(compose_train_cfg(goemotions_dir, out))
    return out


@pytest.fixture(scope="module")
def broken(run_dir, tmp_path_factory):
    """Run directories damaged in the ways a user meets: each a copy of the good one."""
    root = tmp_path_factory.mktemp("broken")

    def copy(name: str):
        target = root / name
        shutil.copytree(run_dir, target)
        return target

    thresholds = copy("no_label_threshold")
    data = json.loads((thresholds / "thresholds.json").read_text())
    data.pop(next(iter(data)))
    (thresholds / "thresholds.json").write_text(json.dumps(data))
    (copy("bad_json") / "model" / "emotion_lab.json").write_text("{not json")
    shutil.rmtree(copy("no_model") / "model")
    (copy("no_texts") / "test_texts.json").unlink()
    empty = root / "empty"
    empty.mkdir()
    return root


def answer(face: str, argv: list[str], capsys) -> str:
    """The face's one error line (asserting exit 2, one line, no traceback)."""
    capsys.readouterr()
    code = run_face(FACES[face].run, argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, (face, argv, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def bad_inputs(run: str, broken: str, tmp: str) -> list[tuple[str, list[str], str]]:
    """(face, arguments, what the line must name). `{run}`: a good run directory."""
    return [
        ("predict", [], "run_dir"),
        ("predict", [f"run_dir={run}"], "text="),
        ("predict", [f"run_dir={run}", "text=hi", f"input={tmp}/x.csv"], "either"),
        ("predict", ["run_dir=/no/such/run", "text=hi"], "/no/such/run"),
        ("predict", [f"run_dir={broken}/empty", "text=hi"], "empty"),
        ("predict", [f"run_dir={broken}/no_model", "text=hi"], "model"),
        ("predict", [f"run_dir={broken}/bad_json", "text=hi"], "emotion_lab.json"),
        ("predict", [f"run_dir={broken}/no_label_threshold", "text=hi"], "thresholds.json"),
        ("predict", [f"run_dir={run}", "text=hi", "top_k=-1"], "top_k=-1"),
        ("predict", [f"run_dir={run}", "text=hi", "top_k=two"], "top_k=two: expected an "
                                                                 "integer"),
        ("predict", [f"run_dir={run}", "text=hi", "threshold=1.5"], "threshold=1.5"),
        ("predict", [f"run_dir={run}", "text=hi", "batch_size=0"], "batch_size=0"),
        ("predict", [f"run_dir={run}", "text=hi", "precision=fp8"], "precision=fp8"),
        ("predict", [f"run_dir={run}", f"input={tmp}/missing.csv", f"output={tmp}/o.jsonl"],
         "missing.csv"),
        ("predict", [f"run_dir={run}", f"input={tmp}/in.csv", f"output={tmp}/o.txt"],
         "output="),
        ("predict", [f"run_dir={run}", f"input={tmp}/in.csv", f"output={tmp}/o.jsonl",
                     "text_column=body"], "body"),
        ("predict", [f"run_dir={run}", "text=hi", "all_scores=maybe"], "maybe"),
        ("serve", [], "run_dir"),
        ("serve", [f"run_dir={run}", "port=eighty"], "port=eighty"),
        ("serve", [f"run_dir={run}", "port=70000"], "port=70000"),
        ("serve", [f"run_dir={run}", "max_batch=0"], "max_batch=0"),
        ("serve", [f"run_dir={run}", "batch_size=-4"], "batch_size=-4"),
        ("serve", ["run_dir=/no/such/run"], "/no/such/run"),
        ("explain", ["text=hello"], "run_dir"),
        ("explain", [f"run_dir={run}"], "text="),
        ("explain", [f"run_dir={run}", "text=hello", "emotion=hapiness"], "hapiness"),
        ("explain", [f"run_dir={run}", "text=hello", "n=0"], "n=0"),
        ("explain", [f"run_dir={run}", "text=hello", "occlusion=blur"], "occlusion=blur"),
        ("explain", [f"run_dir={run}", "text=   "], "text"),
        ("explain", [f"run_dir={broken}/bad_json", "text=hello"], "emotion_lab.json"),
        ("explain", [f"run_dir={broken}/no_texts", "emotion=joy"], "test_texts.json"),
        ("export", [f"run_dir={run}", "format=pdf"], "format=pdf"),
        ("export", [f"run_dir={run}", "opset=7"], "opset=7"),
        ("export", ["run_dir=/no/such/run"], "/no/such/run: no such directory"),
        ("export", [f"run_dir={broken}/no_label_threshold"], "thresholds.json"),
        ("export", [f"run_dir={broken}/no_model"], "model"),
        ("export", [f"run_dir={run}", "nonsense"], "nonsense"),
        ("report", [], "runs=... required"),
        ("report", ["runs=/no/such/dir"], "/no/such/dir"),
        ("report", [f"runs={broken}/empty"], "empty"),
        ("report", [f"runs={run}", "confidence=95"], "confidence"),
        ("report", [f"runs={run}", "bootstrap_method=jackknife"], "jackknife"),
        ("report", [f"runs={run}", "errors_per_label=-1"], "errors_per_label=-1"),
    ]


def test_every_face_answers_each_bad_input_with_one_line(run_dir, broken, tmp_path, capsys):
    (tmp_path / "in.csv").write_text("text\nhello there\n")
    answered = {}
    for face, argv, says in bad_inputs(str(run_dir), str(broken), str(tmp_path)):
        line = answer(face, argv, capsys)
        answered[f"{face} {' '.join(argv)}"] = line
        assert says in line, (face, argv, line)
    print(json.dumps(answered, indent=1), file=sys.__stdout__)
