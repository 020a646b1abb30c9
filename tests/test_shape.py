"""The shape's promises: applying a run loads no Lightning, every face answers a user error
with one line and exit code 2, the run directory's format is checked, and the kind of model
is asked of one place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from emotion_lab.errors import ConfigError, EmotionLabError, RunDirError
from emotion_lab.models.kinds import KINDS, kind_of
from emotion_lab.rundir import RUN_FORMAT, read_metrics, read_spec, write_spec


def python(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOEMOTIONS", "WANDB"))}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_applying_a_run_imports_no_lightning_and_no_training_code():
    code = ("import sys\n"
            "import emotion_lab.predict, emotion_lab.serve, emotion_lab.explain\n"
            "import emotion_lab.export, emotion_lab.inference, emotion_lab.rundir\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning') or m.startswith('emotion_lab.training'))\n"
            "print(loaded)\n")
    done = python("-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"loaded: {done.stdout}"


# (face, arguments, what its one line must name): through `python -m`, so each face's own
# entry point is what answers
BAD_COMMANDS = [
    ("train", ["adapter=no_such_adapter"], "no_such_adapter"),
    ("train", ["-m", "adapter=full,nope"], "nope"),
    ("train", ["backbone=tiny", "logger=none", "data.batch_size=abc"], "data.batch_size=abc"),
    ("evaluate", ["threshold.nope=1"], "nope"),
    ("prepare", ["data=missing_group"], "missing_group"),
    ("search", ["backbone=tiny", "not_a_key.at_all=3"], "not_a_key"),
    ("predict", ["run_dir=/no/such/run", "text=I can't, honestly"], "/no/such/run"),
    ("explain", ["text=hello"], "run_dir"),
    ("export", ["run_dir=/x", "format=pdf", "nonsense"], "nonsense"),
    ("serve", ["port=eighty", "run_dir=/x"], "port=eighty"),
    ("report", ["/some/dir", "--out", "x"], "key=value"),
    ("evaluate", ["run_dir=/no/such/run"], "run_dir=/no/such/run: no such directory"),
    ("rationales", ["data_dir=.", "source=oracle"], "source=oracle"),
    ("search", ["hparams_search=minilm_lora", "search.n_trials=0"], "n_trials"),
]


@pytest.mark.slow  # 14 interpreters, ~10 s each; tests/test_faces.py covers them in-process
def test_every_face_answers_a_user_error_with_one_line_and_exit_2(tmp_path):
    # the commands run three at a time: each is mostly the interpreter's start and imports
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = list(pool.map(lambda case: python("-m", f"emotion_lab.{case[0]}", *case[1],
                                                 cwd=tmp_path), BAD_COMMANDS))
    for (face, args, says), result in zip(BAD_COMMANDS, done, strict=True):
        command = f"{face} {' '.join(args)}"
        assert result.returncode == 2, (command, result.returncode, result.stderr[-2000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and says in errors[0], (command, result.stderr[-2000:])
        assert "Traceback" not in result.stderr, command


def test_a_model_folder_of_another_run_format_is_refused_with_what_to_do(tmp_path):
    write_spec(tmp_path, {"kind": "classifier", "labels": ["joy"]})
    assert read_spec(tmp_path)["format"] == RUN_FORMAT
    spec = json.loads((tmp_path / "emotion_lab.json").read_text())
    (tmp_path / "emotion_lab.json").write_text(json.dumps({**spec, "format": 1}))
    with pytest.raises(RunDirError, match="run format 1.*Train the run again"):
        read_spec(tmp_path)
    # the records (metrics, thresholds, arrays) of format 1 read as they are; later ones not
    (tmp_path / "metrics.json").write_text(json.dumps({"test/macro_f1": 0.5}))
    assert read_metrics(tmp_path)["test/macro_f1"] == 0.5
    (tmp_path / "metrics.json").write_text(json.dumps({"run_format": RUN_FORMAT + 1}))
    with pytest.raises(RunDirError, match=f"run format {RUN_FORMAT + 1}"):
        read_metrics(tmp_path)


def test_the_kind_of_model_is_named_in_one_place():
    assert set(KINDS) == {"classifier", "generative"}
    assert kind_of("generative").prompt({"prompt": {"template": "{text}"}}) == \
        {"template": "{text}"}
    assert kind_of("classifier").prompt({}) is None
    with pytest.raises(ConfigError, match="model.kind=regressor"):
        kind_of("regressor")
    assert issubclass(ConfigError, EmotionLabError)
