"""Resuming a killed run: checkpoints/last.ckpt (written every few minutes of training by
callbacks.resume_checkpoint, and at once on a launcher's preemption signal by
callbacks.preemption), resume.sh (the command that resumes), and their removal when the
run finishes.

ckpt_path: auto (the default) resumes only the job that wrote last.ckpt: a job a launcher
(submitit: hydra/launcher=slurm, submitit_local) started and that was requeued or restarted
keeps its job id, finds that id stamped in its run directory's last.ckpt and resumes from
it. A run started by hand (no launcher job), or a job whose run directory holds another's
last.ckpt, is refused with what to do: starting it fresh would overwrite that run's
checkpoint at its first save and append to its history and W&B run (the W&B id comes from
the run directory), and resuming it silently could continue a run with other settings.
"""

from __future__ import annotations

import logging
import os
import shlex
import warnings
from pathlib import Path

from omegaconf import DictConfig

from emotion_lab.errors import ConfigError

log = logging.getLogger(__name__)
JOB_KEY = "launcher_job"  # the key of the job id stamped in checkpoints (SaveOnPreemption)


def launcher_job() -> str | None:
    """The id of the submitit job this process runs, the same after a requeue or restart:
    SLURM's job id (`<array job>_<task>` for a sweep's job), or the local executor's; None
    for a process started by hand, an sbatch script of one's own included."""
    executor = os.environ.get("SUBMITIT_EXECUTOR")
    if executor == "slurm":
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
    if executor == "local":
        return os.environ.get("SUBMITIT_LOCAL_JOB_ID")
    return None


def checkpoint_job(path: Path) -> str | None:
    """The launcher job stamped in a checkpoint (None: a hand run's, or unreadable). Memory-
    mapped: the tensors are not read."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception:  # noqa: BLE001 (whatever the reason, it is not this job's to resume)
        return None
    return checkpoint.get(JOB_KEY) if isinstance(checkpoint, dict) else None


def resolve_resume(cfg: DictConfig) -> None:
    """Sets cfg.ckpt_path to the checkpoint to resume from, or None.
    ckpt_path=last: this run directory's checkpoints/last.ckpt, or a start from scratch
    where there is none yet (so a requeued job can keep the same command).
    ckpt_path=auto: the same for a launcher's job that wrote that last.ckpt itself (module
    docstring); a start from scratch where there is none; refused where another run's is."""
    given = cfg.get("ckpt_path")
    if given is not None and given not in ("last", "auto") and "://" not in str(given) and \
            not Path(given).is_file():
        raise ConfigError(f"ckpt_path={given}: no such checkpoint. Give a .ckpt file of a "
                          f"run (<run>/checkpoints/best.ckpt or last.ckpt), or ckpt_path=last "
                          f"with hydra.run.dir=<run> to resume that run where it stopped.")
    if given not in ("last", "auto"):
        return
    run_dir = Path(cfg.paths.output_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if given == "auto" and last.is_file():
        job, restarts = launcher_job(), os.environ.get("SLURM_RESTART_COUNT", "0")
        written_by = checkpoint_job(last)
        if job is None or written_by != job:
            by = f"job {written_by}" if written_by else "a run started by hand"
            raise ConfigError(
                f"{run_dir} holds checkpoints/last.ckpt of a run that stopped ({by}), and "
                f"this {'is job ' + job if job else 'run was started by hand'}: resume that "
                f"run with ckpt_path=last (or sh {run_dir / 'resume.sh'}), start it over "
                f"with ckpt_path=null, or give another hydra.run.dir.")
        log.info("job %s, SLURM_RESTART_COUNT=%s: its own last.ckpt", job, restarts)
    if last.is_file():
        log.info("resuming from %s", last)
        cfg.ckpt_path = str(last)
        # Lightning's notice that the directory holds checkpoints: it is meant to, here
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not")
    else:
        if given == "last":
            log.info("ckpt_path=last: %s does not exist (yet): training from the start", last)
        cfg.ckpt_path = None


def write_resume_command(run_dir: Path) -> None:
    """<run>/resume.sh: the command that resumes this run from checkpoints/last.ckpt after a
    crash, in this directory (so its logs, W&B run and outputs continue)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    keep = [o for o in hydra_cfg.overrides.task if o.split("=")[0].lstrip("+~") not in
            ("ckpt_path", "paths.sweep_group")]
    extra = [f"hydra.run.dir={run_dir}"]
    if hydra_cfg.mode == RunMode.MULTIRUN:  # a sweep's job keeps its W&B group
        extra.append(f"paths.sweep_group={hydra_cfg.sweep.dir}")
    command = shlex.join(["python", "-m", "emotion_lab.train", *keep, *extra, "ckpt_path=last"])
    run_dir.mkdir(parents=True, exist_ok=True)
    # from the directory the run started in, where its relative paths point
    (run_dir / "resume.sh").write_text(
        "#!/bin/sh\n# Resume this run from its checkpoints/last.ckpt\n"
        f"cd {shlex.quote(os.getcwd())} || exit 1\n{command}\n", encoding="utf-8")


def remove_resume_point(run_dir: Path) -> None:
    """A finished run has nothing to resume: its last.ckpt (the size of best.ckpt) and
    resume.sh go; best.ckpt and model/ stay."""
    (run_dir / "checkpoints" / "last.ckpt").unlink(missing_ok=True)
    (run_dir / "resume.sh").unlink(missing_ok=True)
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
