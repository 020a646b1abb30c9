"""Before anything trains: torch threads, the training precision, and the settings that
cannot run together, each refused with what to do instead."""

from __future__ import annotations

import logging
import os
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from emotion_lab.errors import BackboneError, ConfigError, EmotionLabError
from emotion_lab.models.backbones import weight_dtype
from emotion_lab.models.precision import fast_precision

log = logging.getLogger(__name__)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, with our own errors unwrapped: Hydra wraps whatever a constructor
    raises, and a bad backbone or data setting deserves its message, not a traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, EmotionLabError):
            raise e.__cause__ from None
        raise


def set_threads(setting: Any) -> None:
    threads = torch_threads(setting)
    if threads:
        torch.set_num_threads(threads)
        log.info("torch threads: %d", threads)


def torch_threads(setting: Any) -> int | None:
    """Threads for this process's torch ops: an int; null (torch's default: every core); or
    auto, which divides the cores among the jobs a launcher runs side by side: the joblib
    launcher's n_jobs parallel jobs (-1: one per core) get cores // n_jobs each, a submitit
    job its cpus_per_task. Two jobs each using every core run many times slower than one
    job alone on 2 cores; divided, they run side by side at full speed."""
    if setting != "auto":
        return None if setting is None else int(setting)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    target = str(launcher.get("_target_", ""))
    cores = available_cores()
    if "JoblibLauncher" in target:
        jobs = launcher.get("n_jobs") or 1
        jobs = cores if jobs < 0 else jobs
        return max(1, cores // jobs)
    if "submitit_launcher" in target and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def share_cores(cfg: DictConfig, trainer: L.Trainer) -> None:
    """DDP on CPU: this node's processes share its cores."""
    if cfg.get("threads") == "auto" and trainer.num_devices > 1 and \
            trainer.strategy.root_device.type == "cpu":
        torch.set_num_threads(max(1, available_cores() // trainer.num_devices))


def check_launch(trainer: L.Trainer) -> None:
    """Refuse what cannot work: Lightning's DDP starts ranks 1..N-1 by running this process's
    command line again, and under `-m` that command is the whole sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    launcher = getattr(trainer.strategy, "launcher", None)
    relaunches = (type(launcher).__name__ == "_SubprocessScriptLauncher"
                  and not trainer.strategy.cluster_environment.creates_processes_externally)
    if relaunches and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"trainer.strategy=ddp with {trainer.num_devices} devices cannot run inside a "
            "multirun (-m): Lightning starts the other ranks by running the command line "
            "again, which would start the whole sweep again in each of them. Either run the "
            "sweep's jobs one by one as single runs (without -m), or let the cluster start "
            "the ranks: -m hydra/launcher=slurm hydra.launcher.tasks_per_node=<GPUs> "
            "hydra.launcher.gpus_per_node=<GPUs> trainer=ddp trainer.devices=<GPUs> "
            "(SLURM starts one process per GPU and Lightning joins them; docs/scale.md).")


def check_weight_dtype(backbone: dict[str, Any], precision: str) -> None:
    """Frozen weights in bf16/fp16 only work where autocast casts activations to match."""
    dtype = weight_dtype(backbone)
    wanted = {torch.bfloat16: "bf16", torch.float16: "16"}.get(dtype)
    if wanted and not precision.startswith(wanted):
        raise BackboneError(
            f"backbone.dtype={backbone.get('dtype')} needs trainer.precision={wanted}-mixed; "
            f"this run trains in {precision} (on this machine trainer.precision=auto picks "
            f"it). Set backbone.dtype=float32, or trainer.precision={wanted}-mixed where the "
            f"hardware runs it natively.")


def training_precision(cfg: DictConfig) -> str:
    """The Trainer's precision: `auto` is bf16-mixed where bf16 is native, else 32-true."""
    precision = cfg.trainer.get("precision", "auto")
    if precision == "auto":
        precision = fast_precision(cfg.trainer.get("accelerator", "auto"))
    if str(precision).startswith("16") and cfg.model.optimizer.get("fused"):
        # fp16's grad scaler: a fused optimizer unscales inside its step, after clipping
        # would have had to unscale; Lightning refuses, so fp16 steps with foreach AdamW.
        # (bf16 has no scaler: the LightningModule clips and the fused step stays.)
        log.info("precision=%s: using foreach AdamW (fused cannot clip gradients under fp16's "
                 "grad scaler)", precision)
        cfg.model.optimizer.fused = False
    return str(precision)


def overridden(group: str) -> bool:
    """Whether the command line set `group` (or a key in it); False outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    keys = (o.lstrip("+~").split("=")[0] for o in HydraConfig.get().overrides.task)
    return any(k == group or k.startswith(f"{group}.") for k in keys)
