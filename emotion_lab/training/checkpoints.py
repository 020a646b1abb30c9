"""How checkpoints reach the disk: atomically, so that a process killed while saving leaves
the previous checkpoint whole.

Lightning's own writer serialises into memory and writes through an fsspec transaction,
whose temporary file lies in the system's temp directory; where that is another
filesystem than the run directory (a node's local /tmp, checkpoints on shared storage),
the final move is a copy into the checkpoint's path, and a kill during it leaves a
truncated checkpoint. Here the temporary file lies beside the checkpoint and an
os.replace, atomic on POSIX filesystems, puts it in place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes `<dir>/.<name>.tmp`, syncs it, and renames it over the
    checkpoint. Remote paths (s3://, gs://) keep Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")  # a killed save's leftover is reused
        with temporary.open("wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
