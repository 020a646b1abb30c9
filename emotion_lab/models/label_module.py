"""What every emotion_lab LightningModule shares, whatever its kind (models/kinds.py):
validation probabilities collected across ranks and scored with the run's threshold policy
(the metric checkpointing follows), AdamW with warmup and linear decay, gradient clipping
that keeps the fused step, FastDropout on CPU, activation checkpointing, a training loss
that weighs DDP ranks by their shares of the batch."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch
from torch import distributed as dist
from torch import nn
from torchmetrics import Metric

from emotion_lab.evaluation.metrics import evaluate
from emotion_lab.models.dropout import use_fast_dropout
from emotion_lab.models.layer_decay import layer_groups

log = logging.getLogger(__name__)


class Collect(Metric):
    """Keeps every batch's probabilities and labels (gathered across DDP ranks)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        self.probs.append(probs.float())
        self.labels.append(labels.float())

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        # after a DDP sync the states are already concatenated tensors
        probs, labels = (torch.cat(s) if isinstance(s, list) else s
                         for s in (self.probs, self.labels))
        return probs.cpu().numpy(), labels.cpu().numpy()


def enable_checkpointing(model: nn.Module) -> None:
    """Recompute each layer's activations in backward: less memory for 0.1-1B models, about
    a third more compute. Non-reentrant: needs no input that requires grad (LoRA, frozen
    embeddings). transformers 5 renamed the method; 4.x has the old name only."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # a classifier never decodes; checkpointing refuses it


class LabelModule(L.LightningModule):
    """What every emotion_lab model shares: per-label probabilities collected on validation
    and scored with the run's threshold policy (the metric checkpointing follows), AdamW with
    warmup and linear decay, gradient clipping that keeps the fused step, FastDropout on CPU.
    Subclasses set `self.model`, `self.label_names`, `self.problem` (data.types.Problem),
    `self.val_outputs` and the parameter counts."""

    def whole_batch_loss(self, mean: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
        """This rank's training loss, such that the gradient DDP averages over the ranks is
        the gradient of the mean over the whole batch, as one process on the whole batch has it.

        `mean` averages the loss over this rank's `count` units (examples; answer tokens for
        language models). Each rank takes its share of every batch (data/batching.py), and
        an odd batch gives the ranks unequal shares: DDP's plain average of the ranks' means
        would weigh each unit of the smaller share more. So each rank returns its sum over
        the global count, times the world size that DDP (and FSDP) divide by. The global
        count costs one all_reduce of a scalar per step: batches do not carry the global
        size, and a token count is known only after collation. It runs on the device, with
        no barrier and no .item(), so under NCCL the host does not wait for it."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return mean
        count = torch.as_tensor(count, dtype=torch.float32, device=mean.device)
        total = count.clone()
        dist.all_reduce(total)
        return mean * count * dist.get_world_size() / total

    def thresholds(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """The run's policy fitted on (validation) probabilities; None: arg-max, no thresholds."""
        return None if self.problem.single_label else \
            self.hparams.threshold_policy(probs, labels)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            # thresholds tuned on the sanity check's two batches would mean nothing, and
            # warn about labels without positives; the check is that validation runs
            self.val_outputs.reset()
            return
        probs, labels = self.val_outputs.compute()
        self.val_outputs.reset()
        summary, _ = evaluate(probs, labels, self.thresholds(probs, labels), self.label_names,
                              "val")
        # the progress bar shows the metric checkpointing follows; loggers get them all
        self.log("val/macro_f1", summary["val/macro_f1"], prog_bar=True)
        rest = ("val/micro_f1", "val/macro_pr_auc", "val/macro_f1_at_0.5", "val/accuracy")
        self.log_dict({k: summary[k] for k in rest if k in summary})

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            logger.log_metrics({"params/trainable": self.trainable_params,
                                "params/total": self.total_params})

    def setup(self, stage: str) -> None:
        if self.hparams.get("fast_dropout") and self.trainer.strategy.root_device.type == "cpu":
            # CPU dropout masks cost a sixth of a step; FastDropout draws half the random
            # numbers for the same dropout (models/dropout.py)
            swapped = use_fast_dropout(self.model)
            if swapped:
                log.debug("FastDropout in place of %d nn.Dropout modules", swapped)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer,
                                    gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        wrapper = self.trainer.model
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") and \
                hasattr(wrapper, "clip_grad_norm_"):
            # FSDP: each rank holds a shard of the gradients; only the wrapper computes the
            # global norm (Lightning's own clipping refuses norm clipping under FSDP)
            wrapper.clip_grad_norm_(gradient_clip_val)
            return
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if gradient_clip_val and scaler is None and getattr(
                optimizer, "_step_supports_amp_scaling", False):
            # Lightning refuses to clip for an optimizer that unscales inside its step (fused
            # AdamW) under mixed precision. That matters for fp16's grad scaler only: bf16 has
            # none, so these are the true gradients and we clip them ourselves, keeping the
            # fused step (1.5x the samples/s of foreach on a bf16 CPU, issue 13).
            params = [p for group in optimizer.param_groups for p in group["params"]
                      if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val, foreach=True)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val, foreach=True)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val,
                                            gradient_clip_algorithm)

    def configure_optimizers(self) -> dict:
        decay = self.hparams.get("layer_lr_decay")
        if decay is None:
            optimizer = self.hparams.optimizer(
                params=[p for p in self.model.parameters() if p.requires_grad])
        else:
            optimizer = self.hparams.optimizer(params=layer_groups(self.model, decay))
            for group in optimizer.param_groups:  # before the scheduler reads initial_lr
                group["lr"] *= group["lr_scale"]
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        total = self.trainer.estimated_stepping_batches
        scheduler = self.hparams.scheduler(optimizer, num_warmup_steps=int(
            self.hparams.warmup_ratio * total), num_training_steps=total)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
