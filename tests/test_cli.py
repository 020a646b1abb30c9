"""The command line (`python -m emotion_lab.train`): multiruns, errors without tracebacks,
and W&B in offline mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from emotion_lab.train import train


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOEMOTIONS", "WANDB"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "emotion_lab.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_multirun_writes_one_run_directory_per_job(goemotions_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "adapter=full,frozen_head", "backbone=tiny",
                     f"data.dir={goemotions_dir}", "logger=none", "trainer.accelerator=cpu",
                     "++trainer.fast_dev_run=true", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep / "multirun.yaml").is_file()
    for job, adapter in enumerate(["full", "frozen_head"]):
        run_dir = sweep / str(job)
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["adapter"] == adapter
        assert metrics["best_checkpoint"] is None  # fast_dev_run keeps no checkpoint
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        assert config["paths"]["output_dir"] == str(run_dir)
        assert config["paths"]["sweep_group"] == str(sweep)  # names the W&B group
        assert (run_dir / "model" / "emotion_lab.json").is_file()
    assert not (tmp_path / "outputs").exists()  # nothing written outside the sweep dir


def test_bad_data_dir_exits_with_a_message_not_a_traceback(tmp_path):
    missing = tmp_path / "no_such_dir"
    result = run_cli("backbone=tiny", f"data.dir={missing}", "logger=none",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"data.dir={missing}" in output
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


# ---------------------------------------------------------------- W&B offline


def offline_runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_wandb_offline_writes_a_run_per_training_run(make_cfg, tmp_path, wandb_offline):
    """Two train() calls in one process (as in a multirun): each gets its own offline W&B run
    in its own run directory, with the per-label table logged."""
    import wandb

    ids = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        train(make_cfg("logger=wandb", "paths.sweep_group=test_sweep", output_dir=run_dir))
        assert wandb.run is None  # finished, so the next job starts its own
        runs = offline_runs(run_dir)
        assert len(runs) == 1, list((run_dir / "wandb").iterdir())
        assert list(runs[0].glob("run-*.wandb"))
        tables = list((runs[0] / "files" / "media" / "table").glob("per_label*.table.json"))
        assert len(tables) == 1
        table = json.loads(tables[0].read_text(encoding="utf-8"))
        assert len(table["data"]) == 2 * (28 + 7 + 4)  # labels, Ekman and sentiment groups
        assert table["columns"][:3] == ["split", "label", "support"]
        ids.append(runs[0].name.rsplit("-", 1)[1])
    assert ids[0] != ids[1]
    assert not list((wandb_offline / "dir").glob("**/offline-run-*"))  # runs live in run dirs


def test_prepare_cli_writes_the_directory_and_refuses_bad_input(goemotions_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOEMOTIONS")}
    out = tmp_path / "prepared"
    ok = subprocess.run([sys.executable, "-m", "emotion_lab.prepare",
                         f"data.dir={goemotions_dir}", f"out_dir={out}"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (out / "train.parquet").is_file() and (out / "prepare.log").is_file()
    assert json.loads(ok.stdout.strip().splitlines()[-1])["train"] == {"read": 160, "kept": 160}
    bad = subprocess.run([sys.executable, "-m", "emotion_lab.prepare",
                          f"data.dir={tmp_path / 'nowhere'}", f"out_dir={tmp_path / 'x'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no such directory" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
