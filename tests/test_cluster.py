"""SLURM through the launcher (hydra/launcher=slurm) on a real cluster (scripts/cluster.sh;
the slurm_cluster fixture skips without one): a two-job sweep, and a job told mid-epoch that
it will be stopped (submitit's preemption signal, sent by SLURM) that saves at once, is
requeued, resumes and ends as the same job never stopped. The same preemption path runs
in-process without a cluster too.

EMOTION_LAB_CLUSTER_FIGURES=<file.json> makes the cluster tests write what they saw (job ids,
states, requeues, metrics) into that file: docs/scale.md's figures come from
benchmarks/results/slurm_cluster.json, written so."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from test_cli import run_cli
from test_launchers import COMMON, check_sweep

from emotion_lab.train import train
from emotion_lab.training.callbacks import SaveOnPreemption
from emotion_lab.training.resume import JOB_KEY, launcher_job

TESTS = Path(__file__).resolve().parent


class PreemptAt(L.Callback):
    """At the end of each training step in `steps` (once each: marker files in the run
    directory; before Lightning's checkpoint callbacks run), this job is sent its preemption
    signal, as SLURM sends it signal_delay_s before a time
    limit: by SLURM (`scancel --signal=USR2 <job>`), or by the process itself (via=self;
    or SIGTERM, what a preemption sends: name=TERM); then it waits until the signal has
    arrived. Loaded by jobs through PYTHONPATH=tests."""

    def __init__(self, steps: list[int], via: str = "slurm", name: str = "USR2"):
        self.steps, self.via, self.name = list(steps), via, name

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        marker = Path(trainer.default_root_dir) / f".preempted_at_{trainer.global_step}"
        if trainer.global_step not in self.steps or marker.exists():
            return
        marker.write_text("")
        if self.via == "self":
            os.kill(os.getpid(), getattr(signal, f"SIG{self.name}"))
        else:
            subprocess.run(["scancel", f"--signal={self.name}", launcher_job()], check=True,
                           timeout=60)
        watcher = next(c for c in trainer.callbacks if isinstance(c, SaveOnPreemption))
        deadline = time.monotonic() + 60
        while not watcher.noted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watcher.noted, "the preemption signal did not arrive"


# 3 epochs of 10 steps; evaluate the last weights; last.ckpt every 4 steps (so a save at
# another step is the preemption's)
TRAIN = ("trainer.max_epochs=3", "callbacks.early_stopping=null",
         "callbacks.model_checkpoint.monitor=null",
         "callbacks.resume_checkpoint.train_time_interval=null",
         "+callbacks.resume_checkpoint.every_n_train_steps=4")
COMPARED = ("val/macro_f1", "test/macro_f1", "test/micro_f1", "val/loss", "test/loss")


def same_results(got: Path, expected: Path) -> dict:
    """The two run directories hold the same metrics and test probabilities; returns the
    compared metrics of both and the largest differences."""
    import numpy as np

    a = json.loads((got / "metrics.json").read_text(encoding="utf-8"))
    b = json.loads((expected / "metrics.json").read_text(encoding="utf-8"))
    assert a["global_steps"] == b["global_steps"] == 30
    assert a["train/samples_seen"] == b["train/samples_seen"] == 3 * 160
    compared = [k for k, v in b.items() if isinstance(v, float) and not k.startswith("time/")]
    for key in compared:
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    probs = [np.load(d / "test_probs.npy") for d in (got, expected)]
    assert np.abs(probs[0] - probs[1]).max() <= 1e-6
    return {"interrupted": {k: a[k] for k in COMPARED if k in a},
            "uninterrupted": {k: b[k] for k in COMPARED if k in b},
            "metrics_compared": len(compared),
            "max_metric_difference": max(abs(a[k] - b[k]) for k in compared),
            "max_test_prob_difference": float(np.abs(probs[0] - probs[1]).max())}


# ------------------------------------------------------------- in-process, no cluster


@pytest.mark.slow
@pytest.mark.parametrize("name", ["USR2", "TERM"])
def test_a_preempted_job_saves_at_once_and_its_requeued_self_resumes(make_cfg, tmp_path,
                                                                     monkeypatch, name):
    """A submitit job's preemption signal (USR2) during step 14: last.ckpt is written at its
    end (not at a 4-step save), stamped with the job id, then submitit's handler is called
    (here a stand-in that records it and exits as submitit's does). SIGTERM (a preemption
    without the user signal): the same save, then Lightning stops the run and the handler is
    not called (SLURM requeues a preempted job itself). The same job started again
    (ckpt_path=auto, the default) resumes there and ends as a job never stopped."""
    for variable in [k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_"))]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4242")
    monkeypatch.syspath_prepend(str(TESTS))
    requeued = []

    def submitit_handler(signum, frame):  # submitit's: dump the job, requeue it, exit
        requeued.append(signum)
        sys.exit(-1)

    def submitit_bypass(signum, frame):  # submitit's SIGTERM handler: a log line
        pass

    before = {signal.SIGUSR2: signal.signal(signal.SIGUSR2, submitit_handler),
              signal.SIGTERM: signal.signal(signal.SIGTERM, submitit_bypass)}
    try:
        train(make_cfg(*TRAIN, output_dir=tmp_path / "whole"))
        preempt = ("+callbacks.preempt._target_=test_cluster.PreemptAt",
                   "+callbacks.preempt.steps=[14]", "+callbacks.preempt.via=self",
                   f"+callbacks.preempt.name={name}")
        run_dir = tmp_path / "preempted"
        with pytest.raises(SystemExit):
            train(make_cfg(*TRAIN, *preempt, output_dir=run_dir))
        assert requeued == ([signal.SIGUSR2] if name == "USR2" else [])
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
        assert checkpoint["global_step"] == 14 and checkpoint[JOB_KEY] == "4242"
        assert not (run_dir / "metrics.json").exists()

        train(make_cfg(*TRAIN, *preempt, output_dir=run_dir))  # the requeued job
        assert len(requeued) == (name == "USR2")
        same_results(run_dir, tmp_path / "whole")
        assert not (run_dir / "checkpoints" / "last.ckpt").exists()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


# ------------------------------------------------------------------ on a SLURM cluster


def launcher_overrides(partition: str) -> tuple[str, ...]:
    """The slurm launcher on a CPU-only node of 2 cores: no GPU, one core per job."""
    return ("hydra/launcher=slurm", f"hydra.launcher.partition={partition}",
            "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=5")


def submitit_jobs(sweep: Path) -> list[str]:
    """The SLURM job ids of a sweep's jobs, in job order: submitit's folders
    (.submitit/<array job>_<task>; .submitit/<array job> holds the sbatch script)."""
    return sorted((p.name for p in (sweep / ".submitit").iterdir()
                   if re.fullmatch(r"\d+_\d+", p.name)), key=lambda j: int(j.split("_")[1]))


def slurm_job(job: str) -> dict[str, str]:
    """`scontrol show job <id>` as key=value pairs (finished jobs stay an hour: MinJobAge)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True,
                           text=True, timeout=30, check=True).stdout
    return dict(item.split("=", 1) for item in shown.split() if "=" in item)


def completion_log(raw_id: str) -> list[str]:
    """The states SLURM's job completion log recorded for a job, one per attempt (a
    requeued attempt is recorded PENDING); [] where the cluster keeps no such file."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                            timeout=30).stdout
    where = re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.M)
    path = Path(where.group(1)) if where else None
    if path is None or not path.is_file():
        return []
    return re.findall(rf"^JobId={raw_id} .*?JobState=(\S+)", path.read_text(), re.M)


def record(name: str, figures: dict) -> None:
    """Adds this test's figures to EMOTION_LAB_CLUSTER_FIGURES, where that is set."""
    path = os.environ.get("EMOTION_LAB_CLUSTER_FIGURES")
    if not path:
        return
    path = Path(path)
    everything = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    everything["cluster"] = subprocess.run(
        ["sinfo", "-h", "-o", "partition %P: %D node(s), %c CPUs, %m MB, gres %G"],
        capture_output=True, text=True, timeout=30).stdout.strip()
    everything["rerun"] = ("EMOTION_LAB_CLUSTER_FIGURES=benchmarks/results/slurm_cluster.json "
                           "python -m pytest -q -m slow tests/test_cluster.py -k slurm")
    everything[name] = figures
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(everything, indent=2) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_a_sweep_runs_as_slurm_jobs(slurm_cluster, goemotions_dir, tmp_path):
    sweep = tmp_path / "sweep"
    start = time.perf_counter()
    result = run_cli("-m", *launcher_overrides(slurm_cluster), "seed=5,6",
                     f"data.dir={goemotions_dir}", f"hydra.sweep.dir={sweep}", *COMMON,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    check_sweep(sweep, [5, 6])  # one run directory per job, and the sweep's report
    jobs = submitit_jobs(sweep)
    assert len(jobs) == 2
    states = {job: slurm_job(job) for job in jobs}
    assert all(s["JobState"] == "COMPLETED" and s["Partition"] == slurm_cluster
               for s in states.values()), states
    completions = {job: completion_log(s["JobId"]) for job, s in states.items()}
    assert all(c in ([], ["COMPLETED"]) for c in completions.values()), completions
    for number, job in enumerate(jobs):  # each job ran its own run directory
        log = (sweep / ".submitit" / job / f"{job}_0_log.out").read_text(encoding="utf-8")
        assert f"job_id={job}" in log
        assert (sweep / str(number) / "metrics.json").is_file()
    record("two_job_sweep", {
        "command": "python -m emotion_lab.train -m " + " ".join(
            [*launcher_overrides(slurm_cluster), "seed=5,6", *COMMON]),
        "jobs": {job: {**{k: s[k] for k in ("JobId", "JobState", "Partition", "ExitCode",
                                            "NumCPUs", "RunTime")},
                       "completion_log": completions[job]} for job, s in states.items()},
        "seconds": round(time.perf_counter() - start, 1)})


def release_requeued(jobs: list[str]) -> list[str]:
    """Start requeued jobs now: SLURM holds a requeued job back for its credentials'
    lifetime (AuthInfo cred_expire, 120 s by default: Reason=BeginTime)."""
    released = []
    for job in jobs:
        state = slurm_job(job)
        if state.get("JobState") == "PENDING" and state.get("Reason") == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"],
                           check=True, timeout=30)
            released.append(job)
    return released


@pytest.mark.slow
def test_a_preempted_slurm_job_is_requeued_and_ends_as_if_never_stopped(
        slurm_cluster, goemotions_dir, tmp_path):
    """Two jobs of one sweep, the same seed: job 0 is sent SLURM's preemption signal during
    steps 14 and 23 (mid-epoch), saves at their ends, is requeued twice and resumes each
    time; job 1 runs through. Both end with the same metrics and test predictions."""
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOEMOTIONS", "WANDB"))}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
               PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    args = ["-m", *launcher_overrides(slurm_cluster), "backbone=tiny", "logger=csv",
            f"data.dir={goemotions_dir}", "trainer.accelerator=cpu", "data.batch_size=16",
            "callbacks.progress_bar=null", *TRAIN, f"hydra.sweep.dir={sweep}",
            "+callbacks.preempt._target_=test_cluster.PreemptAt",
            "+callbacks.preempt.steps=[14,23],[]"]
    start = time.perf_counter()
    output = tmp_path / "sweep.out"
    with output.open("w") as out:
        sweeping = subprocess.Popen([sys.executable, "-m", "emotion_lab.train", *args],
                                    cwd=tmp_path, env=env, stdout=out, stderr=out)
    released = []
    try:
        while sweeping.poll() is None and time.perf_counter() - start < 240:
            time.sleep(1)
            if (sweep / ".submitit").is_dir():
                released += release_requeued(submitit_jobs(sweep))
    finally:
        if sweeping.poll() is None:
            sweeping.kill()
    assert sweeping.wait() == 0, output.read_text()[-3000:]

    preempted, whole = sweep / "0", sweep / "1"
    metrics = same_results(preempted, whole)
    jobs = submitit_jobs(sweep)
    states = {job: slurm_job(job) for job in jobs}
    assert [s["JobState"] for s in states.values()] == ["COMPLETED", "COMPLETED"], states
    assert [int(s["Restarts"]) for s in states.values()] == [2, 0]
    completions = {job: completion_log(s["JobId"]) for job, s in states.items()}
    assert completions[jobs[0]] in ([], ["PENDING", "PENDING", "COMPLETED"]), completions
    log = (preempted / "train.log").read_text(encoding="utf-8")  # all three attempts
    saves = re.findall(r"saved \S+last\.ckpt at step (\d+)", log)
    assert saves == ["14", "23"], log[-3000:]
    assert log.count("resuming from") == 2
    submitit_log = (sweep / ".submitit" / jobs[0] / f"{jobs[0]}_0_log.out").read_text()
    requeues = re.findall(rf"^submitit INFO .* - Requeued job {jobs[0]} ", submitit_log, re.M)
    assert len(requeues) == 2, submitit_log[-3000:]
    record("preempted_job", {
        "command": "python -m emotion_lab.train " + " ".join(args).replace(
            str(goemotions_dir), "<fixture data>").replace(str(sweep), "<sweep>"),
        "jobs": {"preempted": jobs[0], "uninterrupted": jobs[1]},
        "signals": "scancel --signal=USR2 <job> in steps 14 and 23 (of 30, 10 per epoch)",
        "saved_at_steps": [int(s) for s in saves],
        "restarts": {job: int(s["Restarts"]) for job, s in states.items()},
        "states": {job: s["JobState"] for job, s in states.items()},
        "completion_log": completions,
        "requeued_jobs_released_early": released,
        "submitit_requeue_lines": len(requeues),
        "results": metrics,  # tolerance 1e-6
        "seconds": round(time.perf_counter() - start, 1)})


# ------------------------------------------------ ckpt_path=auto: whose last.ckpt is it


def resolved(run_dir: Path, ckpt_path: str | None = "auto") -> str | None:
    from omegaconf import OmegaConf

    from emotion_lab.training.resume import resolve_resume

    cfg = OmegaConf.create({"ckpt_path": ckpt_path, "paths": {"output_dir": str(run_dir)}})
    resolve_resume(cfg)
    return cfg.ckpt_path


@pytest.mark.parametrize(("job_env", "stamp", "expected"), [
    ({}, None, None),                                          # a hand run, fresh directory
    ({"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "7"}, None, None),  # a job's first start
    ({"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "7"}, "7", "last"),  # requeued: resumes
    ({"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "5",
      "SLURM_ARRAY_TASK_ID": "1"}, "5_1", "last"),            # a sweep's job, requeued
    ({"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "77"}, "77", "last"),
    ({"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "8"}, "7", "refused"),  # another job's
    ({"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "8"}, "", "refused"),  # a hand run's
    ({"SLURM_JOB_ID": "8"}, "8", "refused"),  # an sbatch script of one's own: ckpt_path=last
    ({}, "7", "refused"),                                      # a hand run
])
def test_auto_resumes_only_the_launcher_job_that_wrote_the_checkpoint(tmp_path, monkeypatch,
                                                                      job_env, stamp, expected):
    from emotion_lab.errors import ConfigError

    for name in [k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_"))]:
        monkeypatch.delenv(name)
    for name, value in job_env.items():
        monkeypatch.setenv(name, value)
    last = tmp_path / "checkpoints" / "last.ckpt"
    if stamp is not None:
        last.parent.mkdir()
        torch.save({"global_step": 3, **({JOB_KEY: stamp} if stamp else {})}, last)
    if expected == "refused":
        with pytest.raises(ConfigError, match="ckpt_path=last"):
            resolved(tmp_path)
    else:
        assert resolved(tmp_path) == (str(last) if expected == "last" else None)


def test_last_null_and_a_path_keep_their_meaning_whoever_wrote_the_checkpoint(tmp_path,
                                                                               monkeypatch):
    for name in [k for k in os.environ if k.startswith(("SLURM_", "SUBMITIT_"))]:
        monkeypatch.delenv(name)
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    torch.save({"global_step": 3, JOB_KEY: "7"}, last)
    assert resolved(tmp_path, "last") == str(last)
    assert resolved(tmp_path, None) is None
    assert resolved(tmp_path, str(last)) == str(last)
