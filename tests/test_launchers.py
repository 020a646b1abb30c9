"""Hydra launchers: a sweep's jobs in parallel processes (joblib) and through submitit's
local executor (the same code path as SLURM), threads divided among jobs, and the sweep's
report written when it ends."""

from __future__ import annotations

import json

import pytest
from conftest import compose_config
from test_cli import run_cli

COMMON = ("backbone=tiny", "logger=none", "trainer.accelerator=cpu", "++trainer.fast_dev_run=true",
          "data.max_eval_examples=40", "callbacks.progress_bar=null")


def check_sweep(sweep, seeds) -> None:
    runs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(runs) == len(seeds)
    found = sorted(json.loads((r / "config.yaml").read_text().split("seed: ")[1].split()[0])
                   for r in runs)
    assert found == sorted(seeds)
    assert len({str(r) for r in runs}) == len(seeds)  # one output directory per job
    report = (sweep / "report.md").read_text()
    assert all(str(r) in report for r in runs) and (sweep / "report_groups.csv").is_file()


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_processes_with_the_cores_divided(goemotions_dir,
                                                                       tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1,2",
                     f"data.dir={goemotions_dir}", f"hydra.sweep.dir={sweep}", *COMMON,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    check_sweep(sweep, [1, 2])
    logs = [(sweep / str(j) / "train.log").read_text() for j in (0, 1)]
    import os

    cores = len(os.sched_getaffinity(0))
    assert all(f"torch threads: {max(1, cores // 2)}" in log for log in logs)


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(goemotions_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
                     "hydra.launcher.timeout_min=10", "seed=3,4", f"data.dir={goemotions_dir}",
                     f"hydra.sweep.dir={sweep}", *COMMON, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    check_sweep(sweep, [3, 4])
    assert "torch threads: 1" in (sweep / "0" / "train.log").read_text()


def test_the_slurm_launcher_takes_partition_gpus_and_time_from_config():
    cfg = compose_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                         "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
                         "paths.output_dir=/x", return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert "SlurmLauncher" in launcher._target_
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node,
            launcher.timeout_min) == ("gpu", 4, 4, 240)
