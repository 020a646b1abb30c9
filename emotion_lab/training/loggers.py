"""Lightning loggers of emotion_lab's own."""

from __future__ import annotations

import csv
import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except for a run resumed from a checkpoint (`resume_from`):
    Lightning's logger deletes the metrics.csv it finds, losing the history before the crash;
    this one keeps the rows logged up to the checkpoint's step and drops the later ones,
    which the resumed run logs again."""

    def __init__(self, *args: Any, resume_from: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.resume_from = resume_from
        self._kept: tuple[list[str], list[dict[str, str]]] | None = None

    @property
    def experiment(self):
        if self._experiment is None and self.resume_from and rank_zero_only.rank == 0:
            self._kept = self._rows_before(resume_step(self.resume_from))
        with warnings.catch_warnings():
            if self._kept is not None:  # Lightning's "will be deleted": not here, we keep them
                warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment
        if self._kept is not None:
            header, rows = self._kept
            self._kept = None
            writer.metrics_keys = list(header)
            with open(writer.metrics_file_path, "w", newline="", encoding="utf-8") as f:
                out = csv.DictWriter(f, fieldnames=header)
                out.writeheader()
                out.writerows(rows)
            log.info("metrics.csv: kept %d rows logged before the checkpoint", len(rows))
        return writer

    def _rows_before(self, step: int) -> tuple[list[str], list[dict[str, str]]] | None:
        path = Path(self.log_dir) / "metrics.csv"
        if not path.is_file():
            return None
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if r.get("step") not in (None, "")
                    and int(float(r["step"])) < step]
            return list(reader.fieldnames or []), rows


def resume_step(checkpoint: str) -> int:
    """The optimizer steps done at `checkpoint`: rows logged at this step or later are logged
    again by the resumed run (Lightning logs step k's training metrics at step k - 1)."""
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False,
                          mmap=True)["global_step"])


def run_id(output_dir: str) -> str:
    """A W&B run id that is the run directory's: a run resumed in its directory continues
    its W&B run instead of starting another."""
    return hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]
