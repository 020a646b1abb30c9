"""What kind of model a run is, named once: here.

A kind owns everything that differs between a model that classifies with a head
(`classifier`) and a language model that writes its labels (`generative`): the batches the
DataModule serves (a prompt or plain inputs), what its model folder holds and how it loads,
how it scores texts, the evaluation it adds (generated answers) and what it can export.
The training config names it (`model.kind`, conf/model/*.yaml) and a saved run records it
(model/emotion_lab.json), so no code guesses it from a model's class or attributes. A third
kind is one more class here and a conf/model/ file. The LightningModules live in
classifier_module.py and generative_module.py; nothing here imports Lightning, so the
predictor loads without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from emotion_lab.data.batching import cheapest_passes
from emotion_lab.data.prompts import PromptFormat, truncate_texts
from emotion_lab.data.types import Problem
from emotion_lab.errors import ConfigError, ExportError
from emotion_lab.models.heads import build_classifier, uses_hf_head

log = logging.getLogger(__name__)

Progress = Callable[[int], None] | None


class ModelKind:
    """The questions code asks about a kind of model; each kind answers them."""

    name = ""

    def prompt(self, model_cfg: dict[str, Any]) -> dict[str, Any] | None:
        """The prompt the DataModule wraps texts in (None: plain token inputs)."""
        return None

    def spec(self, model_cfg: dict[str, Any]) -> dict[str, Any]:
        """What the model folder's spec records besides backbone, head, adapter, labels."""
        return {}

    def build(self, spec: dict[str, Any]) -> nn.Module:
        """The untrained network a saved model's weights load into."""
        raise NotImplementedError

    def scorer(self, model: nn.Module, tokenizer, spec: dict[str, Any], device: torch.device,
               autocast: torch.dtype | None) -> Scorer:
        raise NotImplementedError

    def add_evaluation(self, evaluation: Any, extras: dict[str, dict[str, list]],
                       splits: dict[str, Any], model_cfg: dict[str, Any],
                       labels: list[str], problem: Problem) -> Any:
        """The evaluation of what this kind produces besides per-label scores."""
        return evaluation

    def check_export(self, fmt: str, spec: dict[str, Any]) -> None:
        """An ExportError where this kind cannot be exported as `fmt`."""


class Scorer:
    """Scores texts with a loaded model: uncalibrated per-label probabilities in input order,
    and per-text extras (what a generative model wrote)."""

    def __call__(self, texts: list[str], batch_size: int, progress: Progress = None,
                 answers: bool = True) -> tuple[np.ndarray, dict[str, list]]:
        raise NotImplementedError

    def describe(self, extras: dict[str, list], i: int) -> dict[str, Any]:
        """Fields a prediction of text i adds from the extras."""
        return {}


class Classifier(ModelKind):
    """A backbone with a classification head (HF's or emotion_lab's pooled head)."""

    name = "classifier"

    def build(self, spec: dict[str, Any]) -> nn.Module:
        return build_classifier(spec["backbone"], spec["labels"], spec["head"],
                                spec["problem_type"])[0]

    def scorer(self, model: nn.Module, tokenizer, spec: dict[str, Any], device: torch.device,
               autocast: torch.dtype | None) -> Scorer:
        return HeadScorer(model, tokenizer, int(spec["backbone"].get("max_length") or 128),
                          Problem(spec["problem_type"]), device, autocast)

    def check_export(self, fmt: str, spec: dict[str, Any]) -> None:
        if fmt == "hf" and not uses_hf_head(spec["head"], spec["backbone"]):
            head = spec["head"]
            layers = head.get("layers", "last")
            raise ExportError(
                f"this run uses emotion_lab's own head (pooling={head['pooling']}"
                f"{', hidden layer' if head.get('hidden_size') else ''}"
                f"{f', model.head.layers={layers}' if layers != 'last' else ''}), which "
                f"transformers has no class for, so no pipeline could load it. Export format=onnx "
                f"(portable, any head), or train with model.head.type=hf for an HF head.")


class Generative(ModelKind):
    """A language model that writes its labels (and a rationale) after a prompt."""

    name = "generative"

    def prompt(self, model_cfg: dict[str, Any]) -> dict[str, Any] | None:
        return model_cfg["prompt"]

    def spec(self, model_cfg: dict[str, Any]) -> dict[str, Any]:
        return {"prompt": model_cfg["prompt"], "generation": model_cfg["generation"],
                "scoring": model_cfg.get("scoring")}

    def build(self, spec: dict[str, Any]) -> nn.Module:
        from emotion_lab.models.language import build_language_model

        return build_language_model(spec["backbone"])

    def scorer(self, model: nn.Module, tokenizer, spec: dict[str, Any], device: torch.device,
               autocast: torch.dtype | None) -> Scorer:
        return AnswerScorer(model, tokenizer, spec, device)

    def add_evaluation(self, evaluation: Any, extras: dict[str, dict[str, list]],
                       splits: dict[str, Any], model_cfg: dict[str, Any],
                       labels: list[str], problem: Problem) -> Any:
        from emotion_lab.evaluation.generation import evaluate_generated

        fmt = PromptFormat.from_config(model_cfg["prompt"], labels)
        for split, found in extras.items():
            metrics, preds, rows = evaluate_generated(found["generated"], splits[split].labels,
                                                      fmt, split, problem.single_label)
            evaluation.metrics |= metrics
            evaluation.arrays[f"{split}_generated_preds"] = preds
            evaluation.answers[split] = rows
        return evaluation

    def check_export(self, fmt: str, spec: dict[str, Any]) -> None:
        raise ExportError(f"format={fmt}: a generative run writes its answers token by token, "
                          f"which neither an HF classification pipeline nor the ONNX graph "
                          f"(one forward pass to label scores) can do. Serve it with "
                          f"python -m emotion_lab.serve or predict, which load it as it is.")


KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (Classifier(), Generative())}


def kind_of(name: str) -> ModelKind:
    """The kind called `name` (model.kind in the config, `kind` in a model spec)."""
    if name not in KINDS:
        raise ConfigError(f"model.kind={name}: no such kind of model; choose one of "
                          f"{', '.join(KINDS)} (conf/model/ has one config per kind).")
    return KINDS[name]


PASS_TOKENS = 32


class HeadScorer(Scorer):
    """A classifier's scores: texts batched by token count, sigmoid (softmax for single-label
    tasks) over its logits. `model` is a torch module or anything that answers like one (an
    ONNX Runtime session, inference/backends.py)."""

    def __init__(self, model: Any, tokenizer, max_length: int, problem: Problem,
                 device: torch.device, autocast: torch.dtype | None) -> None:
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.problem, self.device, self.autocast = problem, device, autocast
        # a pass's fixed cost in padded tokens' worth, for cutting texts into passes
        # (benchmarks/pass_cost.py measures it: MiniLM, fp32, one CPU thread)
        self.pass_tokens = PASS_TOKENS

    @torch.inference_mode()
    def __call__(self, texts: list[str], batch_size: int, progress: Progress = None,
                 answers: bool = True) -> tuple[np.ndarray, dict[str, list]]:
        # Sort by token count, not characters: on GoEmotions' test texts, batches of 64
        # sorted by characters carry 41% padding tokens, sorted by tokens 2%.
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=True,
                                                      max_length=self.max_length)["input_ids"]]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        probs: dict[int, np.ndarray] = {}
        for part in cheapest_passes([lengths[i] for i in order], batch_size, self.pass_tokens):
            idx = order[part]
            # tokenising again costs ~3% of the forward passes; tokenizer.pad on the first
            # encoding would warn that it is the slower path for fast tokenizers
            enc = self.tokenizer([texts[i] for i in idx], truncation=True,
                                 max_length=self.max_length, padding=True, return_tensors="pt")
            with torch.autocast(self.device.type, dtype=self.autocast or torch.float32,
                                enabled=self.autocast is not None):
                logits = self.model(input_ids=enc["input_ids"].to(self.device),
                                    attention_mask=enc["attention_mask"].to(self.device)).logits
            p = self.problem.activation(logits.float())
            probs.update(zip(idx, p.cpu().numpy(), strict=True))
            if progress is not None:
                progress(len(idx))
        return np.stack([probs[i] for i in range(len(texts))]), {}


class AnswerScorer(Scorer):
    """A generative model's scores (each label's likelihood after the labels prefix) and the
    answer it writes, parsed into the labels it names and its rationale."""

    def __init__(self, model: nn.Module, tokenizer, spec: dict[str, Any],
                 device: torch.device) -> None:
        from emotion_lab.models.label_scores import LabelScores

        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_length = int(spec["backbone"].get("max_length") or 128)
        self.format = PromptFormat.from_config(spec["prompt"], spec["labels"])
        # runs from before model.scoring existed scored the first label
        scoring = spec.get("scoring") or {"method": "first_label"}
        self.scoring = LabelScores.build(tokenizer, self.format, scoring,
                                         Problem(spec["problem_type"]))
        self.max_new_tokens = int(spec["generation"]["max_new_tokens"])
        from emotion_lab.models.answer_grammar import is_constrained

        # answers kept to the label set (runs saved before the setting: free, as evaluated)
        self.constrain_to = self.format if is_constrained(spec["generation"]) else None
        self.one_label = Problem(spec["problem_type"]).single_label
        self.tokenizer.padding_side = "left"  # prompts are continued on the right
        with torch.inference_mode():
            self.scoring.calibrate_to(model, tokenizer, self.format, device)

    def __call__(self, texts: list[str], batch_size: int, progress: Progress = None,
                 answers: bool = True) -> tuple[np.ndarray, dict[str, list]]:
        """With answers=False only the scores (generated anyway where the rationale comes
        first: the label scores read the model's own rationale)."""
        from emotion_lab.models.language import generate_answers

        generate = answers or self.format.rationale == "before"
        probs, written = [], []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            prompts = [self.format.prompt(t) for t in truncate_texts(self.tokenizer, chunk,
                                                                       self.max_length)]
            enc = self.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                got = generate_answers(self.model, self.tokenizer, enc["input_ids"],
                                       enc["attention_mask"], self.max_new_tokens,
                                       self.constrain_to, self.one_label) \
                    if generate else None
                scores = self.scoring.probabilities(self.scoring.raw(
                    self.model, self.tokenizer, self.format, enc["input_ids"],
                    enc["attention_mask"], got))
            probs.append(scores.float().cpu().numpy())
            written.extend(got or [""] * len(chunk))
            if progress is not None:
                progress(len(chunk))
        out = np.concatenate(probs) if probs else \
            np.zeros((0, len(self.format.label_names)), np.float32)
        return out, {"answer": written}

    def describe(self, extras: dict[str, list], i: int) -> dict[str, Any]:
        text = extras["answer"][i]
        parsed = self.format.parse(text)
        return {"answer": text.strip(), "written": parsed.labels, "rationale": parsed.rationale}
