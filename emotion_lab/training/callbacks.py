"""Lightning callbacks of emotion_lab's own."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import random
import sys
import time
from typing import Any

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


class TrainingClock(L.Callback):
    """Wall time spent in training batches (validation excluded) and samples seen in them
    (by all DDP ranks together), for the run's training samples/s. Saved in checkpoints, so
    a resumed run counts on from where it stopped."""

    def __init__(self):
        self.seconds, self.samples, self._start = 0.0, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        samples = len(batch["labels"])
        if trainer.world_size > 1:  # each rank trained on its share of the batch
            samples = int(trainer.strategy.reduce(torch.tensor(samples), reduce_op="sum"))
        self.samples += samples

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds, "samples": self.samples}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.seconds, self.samples = state["seconds"], int(state["samples"])


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
