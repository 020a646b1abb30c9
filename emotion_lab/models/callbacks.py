"""Lightning callbacks of emotion_lab's own."""

from __future__ import annotations

import time

import lightning as L


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
