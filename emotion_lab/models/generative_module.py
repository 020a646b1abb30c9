"""The LightningModule of `model=generative`: a language model trained to write its labels
(and a rationale) after a prompt; models/language.py holds the scoring and generation it
shares with the predictor."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from emotion_lab.data.prompts import PromptFormat
from emotion_lab.data.types import Problem
from emotion_lab.errors import BackboneError
from emotion_lab.models.adapters import count_parameters, upcast_trainable
from emotion_lab.models.backbones import load_tokenizer
from emotion_lab.models.label_module import Collect, LabelModule, enable_checkpointing
from emotion_lab.models.label_scores import LabelScores
from emotion_lab.models.language import build_language_model, generate_answers, inner_model

log = logging.getLogger(__name__)


class GenerativeModule(LabelModule):
    """A language model trained to write the labels (and a rationale) after a prompt."""

    def __init__(self, backbone: dict[str, Any], label_names: list[str], adapter: Any,
                 threshold_policy: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 prompt: dict[str, Any], generation: dict[str, Any], optimizer: Callable,
                 scoring: dict[str, Any] | None = None,
                 scheduler: Callable | None = None, warmup_ratio: float = 0.1,
                 train_frequencies: list[float] | None = None,
                 problem_type: str = "multi_label", gradient_checkpointing: bool = False,
                 fast_dropout: bool = False, kind: str = "generative"):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.label_names = list(label_names)
        self.problem = Problem(problem_type)
        self.format = PromptFormat.from_config(prompt, self.label_names)
        self.tokenizer = load_tokenizer(backbone)
        model = build_language_model(backbone)
        if gradient_checkpointing:
            enable_checkpointing(model)
        task = "SEQ_2_SEQ_LM" if model.config.is_encoder_decoder else "CAUSAL_LM"
        self.model = adapter.apply(model.train(), [], task_type=task)
        upcast_trainable(self.model)
        self.trainable_params, self.total_params = count_parameters(self.model)
        if not self.trainable_params:
            raise BackboneError(f"adapter={adapter.name} leaves no parameter of a generative "
                                f"model to train (it has no classification head); use "
                                f"adapter=lora or adapter=full.")
        log.info("model: %s writing its labels (%s), %s of %s parameters train (%.2f%%)",
                 backbone.get("name"), adapter.name, f"{self.trainable_params:,}",
                 f"{self.total_params:,}", 100 * self.trainable_params / self.total_params)
        self.scoring = LabelScores.build(self.tokenizer, self.format, scoring, self.problem)
        config = inner_model(self.model).config
        self.decoder_start_id = getattr(config, "decoder_start_token_id", None)
        self.val_outputs = Collect()

    def lm_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        lm = inner_model(self.model)
        if lm.config.is_encoder_decoder:
            out = lm(input_ids=batch["prompt_ids"], attention_mask=batch["prompt_mask"],
                     labels=batch["target_ids"])
        else:
            out = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["lm_labels"])
        return out.loss.float()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.lm_loss(batch)
        n = len(batch["labels"])
        total = self.whole_batch_loss(loss, self.answer_tokens(batch))
        if self.scoring.method == "yes_no":  # teach the per-label answers too
            raw = self.scoring.raw(self.model, self.tokenizer, self.format, batch["prompt_ids"],
                                   batch["prompt_mask"], self.taught_answers(batch))
            yes_no = self.scoring.loss(raw, batch["labels"])
            self.log("train/yes_no_loss", yes_no, batch_size=n)
            total = total + self.scoring.weight * self.whole_batch_loss(yes_no, n)
            loss = loss + self.scoring.weight * yes_no
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return total

    def taught_answers(self, batch: dict[str, torch.Tensor]) -> list[str] | None:
        """The target answers as text where the rationale comes first: the yes/no questions
        follow the taught rationale, as at evaluation they follow the model's own."""
        if self.format.rationale != "before":
            return None
        ids = batch["target_ids"].masked_fill(batch["target_ids"] == -100,
                                              self.tokenizer.pad_token_id)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def answer_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The tokens lm_loss averages over, so that DDP ranks are weighed by them: one
        process on the whole batch averages over all its answer tokens, not over examples
        (a causal LM predicts token t from t-1: the first position is never a target)."""
        if inner_model(self.model).config.is_encoder_decoder:
            return (batch["target_ids"] != -100).sum()
        return (batch["lm_labels"][:, 1:] != -100).sum()

    def contexts(self, generated: list[str] | None, n: int) -> list[list[int]]:
        """Token ids between prompt and label list, per example (data/prompts.py)."""
        texts = [self.format.label_context(g) for g in (generated or [None] * n)]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def label_scores(self, batch: dict[str, torch.Tensor],
                     generated: list[str] | None = None) -> torch.Tensor:
        """(B, K) per-label probabilities (models/label_scores.py)."""
        return self.scoring.probabilities(self.scoring.raw(
            self.model, self.tokenizer, self.format, batch["prompt_ids"], batch["prompt_mask"],
            generated))

    def on_validation_epoch_start(self) -> None:
        self.scoring.calibrate_to(self.model, self.tokenizer, self.format, self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self.lm_loss(batch)
        self.log("val/loss", loss, batch_size=len(batch["labels"]), sync_dist=True)
        generated = self.answers(batch) if self.format.rationale == "before" else None
        self.val_outputs.update(self.label_scores(batch, generated), batch["labels"])

    def answers(self, batch: dict[str, torch.Tensor]) -> list[str]:
        from emotion_lab.models.answer_grammar import is_constrained

        constrain_to = self.format if is_constrained(self.hparams.generation) else None
        return generate_answers(self.model, self.tokenizer, batch["prompt_ids"],
                                batch["prompt_mask"], self.hparams.generation["max_new_tokens"],
                                constrain_to, self.problem.single_label)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict:
        with torch.autocast(self.device.type, enabled=False):  # fp32 arrays, as classifiers
            generated = self.answers(batch) if self.hparams.generation.get("enabled", True) \
                else None
            probs = self.label_scores(batch, generated)
        return {"index": batch["index"], "probs": probs,
                "generated": generated if generated is not None else [""] * len(probs)}

    def on_predict_start(self) -> None:
        self.model.float()
        self.scoring.calibrate_to(self.model, self.tokenizer, self.format, self.device)
