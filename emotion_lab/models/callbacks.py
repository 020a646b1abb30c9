"""Lightning callbacks of emotion_lab's own."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import time

import lightning as L

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


class TrainingClock(L.Callback):
    """Wall time spent in training batches (validation excluded) and samples seen in them,
    for the run's training samples/s."""

    def __init__(self):
        self.seconds, self.samples, self._start = 0.0, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        self.samples += len(batch["labels"])

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


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
