"""Lightning callbacks of emotion_lab's own."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from emotion_lab.training.resume import JOB_KEY, launcher_job

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


class TrainingClock(L.Callback):
    """Wall time spent in training batches (validation excluded) and samples seen in them
    (by all DDP ranks together), for the run's training samples/s. Saved in checkpoints, so
    a resumed run counts on from where it stopped.

    Each rank counts the samples of its own shares; the counts are summed over the ranks at
    the end of each epoch and whenever the clock is saved while fitting, so that a checkpoint
    written mid-epoch holds the exact global count. One collective per epoch (and per
    checkpoint), not one per step, and on the strategy's device: NCCL takes no CPU tensor.
    Both points are reached by every rank (Lightning saves checkpoints on all ranks)."""

    def __init__(self):
        self.seconds, self.samples, self._start = 0.0, 0, 0.0
        self._local = 0  # this rank's samples since the counts were last summed
        self._fitting: L.Trainer | None = None  # set while fitting: state_dict sums then

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._fitting = trainer

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":  # after fit, reading the clock (train.py) needs no collective
            self._fitting = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        self._local += len(batch["labels"])  # this rank's share of the batch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._sum_over_ranks(trainer)

    def _sum_over_ranks(self, trainer: L.Trainer) -> None:
        local, self._local = self._local, 0
        if trainer.world_size > 1:
            count = torch.tensor(local, device=trainer.strategy.root_device)
            local = int(trainer.strategy.reduce(count, reduce_op="sum"))
        self.samples += local

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    def state_dict(self) -> dict[str, float]:
        if self._fitting is not None:  # a checkpoint: every rank saves it, so all sum here
            self._sum_over_ranks(self._fitting)
        return {"seconds": self.seconds, "samples": self.samples}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.seconds, self.samples = state["seconds"], int(state["samples"])
        self._local = 0


class RandomState(L.Callback):
    """Saves the random number generators in each checkpoint and restores them on resume, so
    that a run resumed after a crash draws the same dropout masks as one never stopped
    (Lightning restores weights, optimizer, schedule and loops, not the generators)."""

    def state_dict(self) -> dict[str, Any]:
        state = {"python": random.getstate(), "numpy": np.random.get_state(),
                 "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class ReuseFreedMemory(L.Callback):
    """On CPU under glibc, keep freed memory for the next step instead of giving it back.

    By default glibc serves every allocation above 128 KiB-32 MiB with its own mmap and
    unmaps it on free, so each training step maps its activations and gradients afresh and
    the kernel zeroes every page on first touch: ~1M page faults in 18 MiniLM steps.
    Raising the mmap and trim thresholds lets the heap keep those blocks for reuse (4.5x
    fewer page faults; benchmarks/train_speed.py measures the speed). Costs memory the
    process holds on to: at most the step's peak, which it needs again next step anyway.
    """

    def __init__(self, mmap_threshold_mb: int = 512, trim_threshold_mb: int = 1536) -> None:
        if not 0 < mmap_threshold_mb < 2048 or not 0 < trim_threshold_mb < 2048:
            raise ValueError("mallopt takes a C int: thresholds must lie in 1-2047 MB")
        self.mmap_threshold = mmap_threshold_mb << 20
        self.trim_threshold = trim_threshold_mb << 20

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type != "cpu" or not sys.platform.startswith("linux"):
            return
        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
        except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator be
            return
        done = (mallopt(M_MMAP_THRESHOLD, self.mmap_threshold)
                and mallopt(M_TRIM_THRESHOLD, self.trim_threshold))
        if not done:
            log.debug("mallopt refused the thresholds; the allocator keeps its defaults")


class SaveOnPreemption(Checkpoint):
    """A launcher's job writes checkpoints/last.ckpt as soon as it is told it will be stopped,
    not up to callbacks.resume_checkpoint's interval later; and stamps every checkpoint with
    its job id, so that the requeued job, and only it, resumes from it (ckpt_path=auto,
    training/resume.py). A process that is no launcher's job (a hand run) is left alone.

    The signals: submitit's preemption signal (SUBMITIT_PREEMPT_SIGNAL, USR2 by default),
    which SLURM sends signal_delay_s before the time limit (submitit's `--signal=USR2@<s>`)
    and `scancel --signal=USR2 <job>` sends; and SIGTERM, which SLURM sends a preempted or
    cancelled job KillWait seconds before SIGKILL. Their handlers only note the signal:
    saving inside a handler could catch an optimizer step half done. At the end of that
    training batch (or of a validation while fitting) the callback saves last.ckpt at the
    resume checkpoint's path with trainer.save_checkpoint (the atomic writer; under DDP
    every rank, on rank 0's word). Being a Checkpoint, Lightning runs it after the callbacks
    that count the batch (TrainingClock), as it runs ModelCheckpoint. Then it calls the
    handler it wrapped: submitit's, which dumps the job, requeues it (`scontrol requeue`) and
    exits. After SIGTERM alone it calls none: Lightning stops at the end of that batch, and
    SLURM requeues a preempted job itself where the cluster says so (PreemptMode=REQUEUE).

    One mechanism, submitit's, not Lightning's SLURM auto-requeue (SLURMEnvironment,
    SIGUSR1): Lightning's handler saves hpc_ckpt_<n>.ckpt inside the signal handler, mid-
    step, and requeues behind submitit's back; submitit's knows the job (it re-runs the same
    Hydra job) and counts time-outs (hydra.launcher.max_num_timeout). SLURM sends USR1 to no
    submitit job (Lightning's handler stays installed, unused), and where
    SUBMITIT_PREEMPT_SIGNAL=USR1 Lightning finds this handler in place and installs none."""

    def __init__(self) -> None:
        self._wrapped: dict[int, Any] = {}  # signal -> the handler found at setup
        self.noted: set[int] = set()  # signals received and not acted on yet
        self._preempt: int | None = None
        self._active = False  # between setup and the end of fitting (or the save)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if (stage != "fit" or launcher_job() is None
                or threading.current_thread() is not threading.main_thread()):
            return
        self._preempt = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"),
                                None)
        for signum in {self._preempt, signal.SIGTERM} - {None}:
            self._wrapped[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note)
        self.noted, self._active = set(), True

    def _note(self, signum: int, frame: Any) -> None:
        if not self._active:  # still installed by Lightning's teardown: pass it on
            self._forward(signum)
            return
        log.warning("%s: last.ckpt is saved at the end of this batch",
                    signal.Signals(signum).name)
        self.noted.add(signum)

    def _forward(self, signum: int) -> None:
        handler = self._wrapped.get(signum)
        if callable(handler):
            handler(signum, None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._save_if_told(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._save_if_told(trainer)

    def _save_if_told(self, trainer: L.Trainer) -> None:
        if not self._active:
            return
        told = bool(self.noted)
        if trainer.world_size > 1:  # every rank saves at the same step, or none does
            told = trainer.strategy.broadcast(told)
        if told:
            path = self._path(trainer)
            trainer.save_checkpoint(path)
            log.warning("saved %s at step %d", path, trainer.global_step)
            self._hand_over()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._hand_over()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._hand_over()

    def _hand_over(self) -> None:
        """Put the wrapped handlers back, then give a preemption signal noted to submitit's:
        it requeues the job (from the last.ckpt just saved, where training goes on) and
        exits. Later signals go straight to the handlers."""
        if not self._active:
            return
        self._active = False
        for signum, handler in self._wrapped.items():
            if handler is not None:
                signal.signal(signum, handler)
        if self._preempt in self.noted:
            self._forward(self._preempt)

    @staticmethod
    def _path(trainer: L.Trainer) -> str:
        resume = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)
                       and c.filename == "last" and c.dirpath), None)
        directory = resume.dirpath if resume else Path(trainer.default_root_dir) / "checkpoints"
        return str(Path(directory) / "last.ckpt")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        job = launcher_job()
        if job is not None:
            checkpoint[JOB_KEY] = job
