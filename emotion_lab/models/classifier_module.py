"""The LightningModule of `model=default` (kind `classifier`): a Hugging Face classifier,
an adapter strategy, the loss; models/label_module.py holds what it shares with the
generative module.

Multi-label tasks: sigmoid per label, BCE, thresholds from the run's policy. Single-label
tasks: softmax, cross-entropy, the arg-max class (threshold policies do not apply).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from emotion_lab.data.types import Problem
from emotion_lab.models.adapters import count_parameters, upcast_trainable
from emotion_lab.models.heads import build_classifier, init_output_bias
from emotion_lab.models.label_module import Collect, LabelModule, enable_checkpointing
from emotion_lab.models.losses import build_loss

log = logging.getLogger(__name__)


class EmotionModule(LabelModule):
    def __init__(self, backbone: dict[str, Any], label_names: list[str], adapter: Any,
                 threshold_policy: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 head: dict[str, Any], loss: dict[str, Any], optimizer: Callable,
                 scheduler: Callable | None = None, warmup_ratio: float = 0.1,
                 train_frequencies: list[float] | None = None,
                 problem_type: str = "multi_label", fast_dropout: bool = True,
                 gradient_checkpointing: bool = False, kind: str = "classifier",
                 layer_lr_decay: float | None = None):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.label_names = list(label_names)
        self.problem = Problem(problem_type)
        model, self.head_modules = build_classifier(backbone, self.label_names, head,
                                                    problem_type)
        if head.get("init_bias", "prior") == "prior" and train_frequencies is not None and \
                not init_output_bias(model, self.head_modules, train_frequencies,
                                     self.problem.single_label):
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
        self.loss_fn = build_loss(loss, self.problem.single_label, train_frequencies)
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
        target = batch["labels"].argmax(dim=1) if self.problem.single_label else batch["labels"]
        return logits, self.loss_fn(logits, target)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, loss = self._step(batch)
        examples = len(batch["labels"])  # BCE averages over labels too: the same K per example
        self.log("train/loss", loss, prog_bar=True, batch_size=examples)
        return self.whole_batch_loss(loss, examples)

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

