"""A Lightning callback that kills its own process with SIGKILL at a given training step, as
a crash or a pre-empted node would: no exception, no cleanup, no finally block. Loaded by
training subprocesses in tests (PYTHONPATH=tests, +callbacks.crash._target_=crash.KillAt)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L


class KillAt(L.Callback):
    """SIGKILL after training step `step`, once: `marker` records that it happened, so the
    resumed run (same command line, same callback) goes on."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, Path(marker)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.write_text(str(self.step))
            os.kill(os.getpid(), signal.SIGKILL)
