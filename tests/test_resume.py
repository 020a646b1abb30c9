"""Crash-safe runs: a training process killed with SIGKILL mid-epoch resumes with the command
its run directory holds (resume.sh) and ends as a run never stopped would: the same metrics,
the same logged history, every output file, the same W&B run id. A kill during a checkpoint
save leaves the previous checkpoint usable."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emotion_lab.training.loggers import run_id

TESTS = Path(__file__).resolve().parent


def run(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOEMOTIONS", "WANDB"))}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]),
               WANDB_MODE="offline",
               WANDB_SILENT="true", WANDB_DIR=str(home / "dir"),
               WANDB_CONFIG_DIR=str(home / "config"), WANDB_CACHE_DIR=str(home / "cache"),
               WANDB_DATA_DIR=str(home / "data"))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def train_args(goemotions_dir, run_dir: Path, *extra: str) -> list[str]:
    # 10 steps per epoch, 3 epochs; last.ckpt every 4 steps instead of every 10 minutes
    return [sys.executable, "-m", "emotion_lab.train", "backbone=tiny",
            f"data.dir={goemotions_dir}", "logger=[csv,wandb]", "trainer.max_epochs=3",
            "trainer.accelerator=cpu", "data.batch_size=16", "threads=1",
            "trainer.log_every_n_steps=2", "callbacks.progress_bar=null",
            "callbacks.early_stopping=null",
            "callbacks.model_checkpoint.monitor=null",  # evaluate the last weights
            "callbacks.resume_checkpoint.train_time_interval=null",
            "+callbacks.resume_checkpoint.every_n_train_steps=4",
            f"hydra.run.dir={run_dir}", *extra]


def history(run_dir: Path) -> dict[tuple[str, str], str]:
    """metrics.csv as {(step, column): value}, without the wall-clock columns."""
    with (run_dir / "csv" / "metrics.csv").open(newline="", encoding="utf-8") as f:
        return {(row["step"], key): value for row in csv.DictReader(f)
                for key, value in row.items() if value != "" and key != "step"
                and not key.startswith("time/")}


def files(run_dir: Path) -> set[str]:
    skip = ("wandb", ".hydra", "train.log", "resume.sh")
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
            if p.is_file() and not str(p.relative_to(run_dir)).startswith(skip)}


# the frozen head trains on cached features (adapter.cache_features), served by their own
# loader: it must resume mid-epoch in the same order as the token loader does
ADAPTERS = {"full": [], "frozen_head": ["adapter=frozen_head", "model.head.pooling=mean"]}


@pytest.mark.slow
@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_a_run_killed_mid_epoch_resumes_and_ends_as_if_never_stopped(goemotions_dir,
                                                                     tmp_path, adapter):
    home = tmp_path / "wandb_home"
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    done = run(train_args(goemotions_dir, whole, *ADAPTERS[adapter]), tmp_path, home)
    assert done.returncode == 0, done.stderr[-3000:]

    # Killed twice: after step 14 (epoch 2, batch 4), resuming from last.ckpt of step 12,
    # mid-epoch; then after step 21, resuming from step 20: the end of epoch 2's last batch,
    # before its validation.
    crash = ["+callbacks.crash._target_=crash.KillAt", "+callbacks.crash.steps=[14,21]",
             f"+callbacks.crash.markers={tmp_path / 'kills'}"]
    killed = run(train_args(goemotions_dir, crashed, *ADAPTERS[adapter], *crash), tmp_path,
                 home)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (crashed / "metrics.json").exists()
    checkpoint = torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 12

    # the documented command: the run directory's resume.sh
    command = (crashed / "resume.sh").read_text(encoding="utf-8")
    assert f"hydra.run.dir={crashed}" in command and "ckpt_path=last" in command
    killed_again = run(["sh", str(crashed / "resume.sh")], tmp_path, home)
    assert killed_again.returncode == 128 + 9, killed_again.stderr[-3000:]  # sh's SIGKILL
    assert torch.load(crashed / "checkpoints" / "last.ckpt",
                      weights_only=False)["global_step"] == 20
    resumed = run(["sh", str(crashed / "resume.sh")], tmp_path, home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr + resumed.stdout

    expected = json.loads((whole / "metrics.json").read_text(encoding="utf-8"))
    got = json.loads((crashed / "metrics.json").read_text(encoding="utf-8"))
    assert got["global_steps"] == expected["global_steps"] == 30
    assert got["train/samples_seen"] == expected["train/samples_seen"] == 3 * 160
    for key, value in expected.items():
        if isinstance(value, float) and not key.startswith("time/"):
            assert got[key] == pytest.approx(value, abs=1e-6), key
    assert history(crashed) == history(whole)  # every step logged once, none lost
    assert files(crashed) == files(whole)
    for run_dir in (whole, crashed):  # a finished run has nothing to resume
        assert not (run_dir / "resume.sh").exists()
        assert not (run_dir / "checkpoints" / "last.ckpt").exists()
        assert (run_dir / "checkpoints" / "best.ckpt").is_file()

    attempts = list((crashed / "wandb").glob("offline-run-*"))
    assert len(attempts) == 3
    assert {p.name.rsplit("-", 1)[1] for p in attempts} == {run_id(str(crashed))}  # one run


KILLED_DURING_SAVE = """
import io, os, signal, sys
import torch
from emotion_lab.training.checkpoints import AtomicCheckpointIO

path, writer = sys.argv[1], AtomicCheckpointIO()
writer.save_checkpoint({"step": 1, "weights": torch.ones(100_000)}, path)
real_save = torch.save

def half_then_sigkill(obj, f, *args, **kwargs):
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = half_then_sigkill
writer.save_checkpoint({"step": 2, "weights": torch.zeros(100_000)}, path)
"""


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    result = subprocess.run([sys.executable, "-c", KILLED_DURING_SAVE, str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr[-2000:]
    assert (tmp_path / "checkpoints" / ".last.ckpt.tmp").is_file()  # the half-written one
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["step"] == 1 and float(checkpoint["weights"].sum()) == 100_000


def test_training_writes_checkpoints_through_the_atomic_writer():
    from conftest import compose_config
    from hydra.utils import instantiate

    from emotion_lab.training.checkpoints import AtomicCheckpointIO

    cfg = compose_config("trainer.accelerator=cpu", "paths.output_dir=/x")
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False,
                          precision="32-true")
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_missing_checkpoint_is_named_and_last_without_one_starts_fresh(make_cfg, tmp_path):
    from emotion_lab.errors import ConfigError
    from emotion_lab.train import train

    with pytest.raises(ConfigError, match="no such checkpoint"):
        train(make_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    metrics, _ = train(make_cfg("ckpt_path=last"))  # nothing to resume yet: from scratch
    assert metrics["global_steps"] == 10


def test_a_run_started_by_hand_never_resumes_an_old_checkpoint(make_cfg, tmp_path, monkeypatch):
    """ckpt_path=auto (the default) into a directory that holds a stopped run's last.ckpt: a
    run started by hand is refused, with what to do, before anything is built or written; it
    neither resumes that run nor starts over on top of it."""
    from emotion_lab.errors import ConfigError
    from emotion_lab.train import train

    for name in [k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_"))]:
        monkeypatch.delenv(name)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"global_step": 12, "launcher_job": "7_0"}, last)
    before = last.read_bytes()
    with pytest.raises(ConfigError) as refused:
        train(make_cfg())
    message = str(refused.value)
    assert "started by hand" in message and "job 7_0" in message
    assert "ckpt_path=last" in message and "ckpt_path=null" in message  # what to do
    assert last.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]
