"""A Lightning callback that kills its own process with SIGKILL at a given training step, as
a crash or a pre-empted node would: no exception, no cleanup, no finally block. Loaded by
training subprocesses in tests (PYTHONPATH=tests, +callbacks.crash._target_=crash.KillAt)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L


class KillAt(L.Callback):
    """SIGKILL after each training step in `steps`, once each: files in `markers` record
    the kills done, so the resumed run (same command line, same callback) goes on."""

    def __init__(self, steps: list[int], markers: str):
        self.steps, self.markers = list(steps), Path(markers)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        marker = self.markers / f"killed_at_{trainer.global_step}"
        if trainer.global_step in self.steps and not marker.exists():
            self.markers.mkdir(parents=True, exist_ok=True)
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
