"""What a run prints: short log lines, and no library notices we know to be harmless.

Kept: progress bars, our own stage lines (data, model, training, evaluation, where the run
went), and every warning a user may have to act on. Dropped, each by its exact message, so
that a new or changed notice still shows:

- Lightning 2.6's `isinstance(treespec, LeafSpec)` deprecation, raised inside Lightning by
  torch 2.13's pytree (Lightning's to fix; nothing in a run can avoid it);
- Lightning's notice that it cannot check a custom batch sampler returns every example for
  prediction: ours (LengthGroupedBatches) does, and tests/test_data.py checks it;
- Lightning's notice that a run resumed mid-epoch has a loader it cannot resume: our
  loaders, of tokens and of cached features (adapter=frozen_head) alike, resume through
  TextDataModule.state_dict in the same order (tests/test_resume.py).

Lightning's info lines (accelerators available, AMP in use, a logger tip, checkpoint
restores) are turned down in conf/hydra/default.yaml, with ConsoleFormatter for our lines.
PEFT's `is_gradient_checkpointing` FutureWarning is silenced where PEFT is called
(models/adapters.py), transformers' bars and new-head LOAD REPORT where models load
(models/backbones.py).
"""

from __future__ import annotations

import logging
import os
import warnings

HARMLESS_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"You are using a custom batch sampler `LengthGroupedBatches` for prediction",
    r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader",
)


# Lightning's hint on any machine with SLURM installed (every cluster login node) that
# `srun` exists but this process was not started by it.
SRUN_UNUSED = r"The `srun` command is available on your system but is not used"


def silence_known_warnings() -> None:
    """Ignore the warnings in HARMLESS_WARNINGS (idempotent), and the srun hint outside a
    SLURM job: a run on a login node or a workstation is not meant for srun. Inside a job
    (sbatch, salloc) the hint stays, since there a missing srun leaves ranks waiting."""
    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings("ignore", message=SRUN_UNUSED)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS message`; warnings and errors say which they are."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        if record.levelno >= logging.WARNING:
            return f"{record.asctime} {record.levelname.lower()}: {record.message}"
        return super().formatMessage(record)
