"""Resuming a killed run: checkpoints/last.ckpt (written every few minutes of training by
callbacks.resume_checkpoint), resume.sh (the command that resumes), and their removal when
the run finishes."""

from __future__ import annotations

import logging
import os
import shlex
import warnings
from pathlib import Path

from omegaconf import DictConfig

from emotion_lab.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_resume(cfg: DictConfig) -> None:
    """ckpt_path=last: this run directory's checkpoints/last.ckpt, or a start from scratch
    where there is none yet (so a requeued job can keep the same command)."""
    given = cfg.get("ckpt_path")
    if given is not None and given != "last" and "://" not in str(given) and \
            not Path(given).is_file():
        raise ConfigError(f"ckpt_path={given}: no such checkpoint. Give a .ckpt file of a "
                          f"run (<run>/checkpoints/best.ckpt or last.ckpt), or ckpt_path=last "
                          f"with hydra.run.dir=<run> to resume that run where it stopped.")
    if given != "last":
        return
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s", last)
        cfg.ckpt_path = str(last)
        # Lightning's notice that the directory holds checkpoints: it is meant to, here
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not")
    else:
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
