"""A split's predictions after training, in the split's order, gathered across DDP ranks."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch


def predict_split(trainer: L.Trainer, model: L.LightningModule, loader,
                  ckpt_path: str | None) -> tuple[np.ndarray, dict[str, list]]:
    """Probabilities for a split in its original order (loaders yield length-sorted batches),
    and any per-example lists the model returns besides (a generative model's answers)."""
    outputs = trainer.predict(model, dataloaders=loader, ckpt_path=ckpt_path,
                              weights_only=False)  # our own checkpoint: hparams are pickled
    if trainer.world_size > 1:  # DDP: each rank predicted its share of the split
        gathered = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, outputs)
        outputs = [o for rank in gathered for o in rank]
    index = torch.cat([o["index"] for o in outputs])
    probs = torch.cat([o["probs"] for o in outputs]).float()
    ordered = torch.empty_like(probs)
    ordered[index] = probs
    extras = {}
    for key in (k for k, v in outputs[0].items() if isinstance(v, list)):
        values = [None] * len(index)
        for i, value in zip(index.tolist(), (v for o in outputs for v in o[key]), strict=True):
            values[i] = value
        extras[key] = values
    return ordered.numpy(), extras
