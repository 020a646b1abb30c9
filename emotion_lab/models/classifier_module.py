"""The LightningModule: a Hugging Face classifier, an adapter strategy, the loss, AdamW.

Multi-label tasks: sigmoid per label, BCE, thresholds from the run's policy. Single-label
tasks: softmax, cross-entropy, the arg-max class (threshold policies do not apply).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from emotion_lab.data.types import Problem
from emotion_lab.evaluation.metrics import evaluate
from emotion_lab.models.adapters import count_parameters, upcast_trainable
from emotion_lab.models.dropout import use_fast_dropout
from emotion_lab.models.heads import build_classifier, init_output_bias

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


def pos_weight_from(setting: Any, train_frequencies: list[float] | None,
                    cap: float) -> torch.Tensor | None:
    """BCE pos_weight: None, 'balanced' (negatives/positives per label, capped) or a list."""
    if setting is None:
        return None
    if setting == "balanced":
        if train_frequencies is None:
            raise ValueError("model.loss.pos_weight=balanced needs the training label frequencies.")
        freq = torch.tensor(train_frequencies).clamp(min=1e-6)
        return ((1 - freq) / freq).clamp(max=cap)
    return torch.tensor(list(setting), dtype=torch.float)


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
    Subclasses set `self.model`, `self.label_names`, `self.single_label`, `self.val_outputs`
    and the parameter counts."""

    def thresholds(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """The run's policy fitted on (validation) probabilities; None: arg-max, no thresholds."""
        return None if self.single_label else self.hparams.threshold_policy(probs, labels)

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
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.hparams.optimizer(params=params)
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        total = self.trainer.estimated_stepping_batches
        scheduler = self.hparams.scheduler(optimizer, num_warmup_steps=int(
            self.hparams.warmup_ratio * total), num_training_steps=total)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class EmotionModule(LabelModule):
    def __init__(self, backbone: dict[str, Any], label_names: list[str], adapter: Any,
                 threshold_policy: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 head: dict[str, Any], loss: dict[str, Any], optimizer: Callable,
                 scheduler: Callable | None = None, warmup_ratio: float = 0.1,
                 train_frequencies: list[float] | None = None,
                 problem_type: str = "multi_label", fast_dropout: bool = True,
                 gradient_checkpointing: bool = False, kind: str = "classifier"):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.label_names = list(label_names)
        self.problem = Problem(problem_type)
        self.single_label = self.problem.single_label
        model, self.head_modules = build_classifier(backbone, self.label_names, head,
                                                    problem_type)
        if head.get("init_bias", "prior") == "prior" and train_frequencies is not None and \
                not init_output_bias(model, self.head_modules, train_frequencies,
                                     self.single_label):
            log.info("model.head.init_bias=prior: %s's output layer has no bias, so it starts "
                     "at 0.5 for every label (model.head.type=pooled has one)",
                     backbone.get("name"))
        # transformers returns models in eval mode; Lightning keeps each module's mode as found
        if gradient_checkpointing:
            enable_checkpointing(getattr(model, "encoder", model))
        self.model = adapter.apply(model.train(), self.head_modules)
        upcast_trainable(self.model)
        self.trainable_params, self.total_params = count_parameters(self.model)
        log.info("model: %s / %s, %s of %s parameters train (%.2f%%)", backbone.get("name"),
                 getattr(adapter, "name", type(adapter).__name__), f"{self.trainable_params:,}",
                 f"{self.total_params:,}", 100 * self.trainable_params / self.total_params)
        if self.single_label:
            if loss.get("pos_weight") is not None:
                log.warning("model.loss.pos_weight applies to multi-label tasks; this task is "
                            "single-label, so it is ignored.")
            self.loss_fn: nn.Module = nn.CrossEntropyLoss()
        else:
            pos_weight = pos_weight_from(loss.get("pos_weight"), train_frequencies,
                                         loss.get("max_pos_weight", 10.0))
            self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        self.val_outputs = Collect()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.problem.activation(logits)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "features" in batch:  # cached frozen-backbone features: only the head runs
            return self.model.classifier(batch["features"]).float()
        return self(batch["input_ids"], batch["attention_mask"]).float()

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(batch)
        target = batch["labels"].argmax(dim=1) if self.single_label else batch["labels"]
        return logits, self.loss_fn(logits, target)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, loss = self._step(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, loss = self._step(batch)
        self.val_outputs.update(self.probabilities(logits), batch["labels"])
        self.log("val/loss", loss, batch_size=len(batch["labels"]), sync_dist=True)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        # The run's saved arrays (and the thresholds fitted on them) are computed in fp32
        # whatever the training precision: under bf16-mixed the weights are fp32 already, and
        # bf16 scores differ by ~1e-3 between machines, so only fp32 lets any machine's
        # loader reproduce the run.
        with torch.autocast(self.device.type, enabled=False):
            logits = self.logits(batch)
        return {"index": batch["index"], "probs": self.probabilities(logits)}

    def on_predict_start(self) -> None:
        # a base loaded in bf16 (backbone.dtype) predicts in fp32 too: the same values,
        # widened, so that the saved arrays and a reloaded run agree on any machine
        self.model.float()

