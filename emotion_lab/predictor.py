"""Apply a trained run: `EmotionClassifier.from_run(run_dir).predict(texts)`.

    from emotion_lab.predictor import EmotionClassifier
    clf = EmotionClassifier.from_run("outputs/train/runs/2026-11-22_08-00-00")
    clf.predict("Thank you so much!")                 # emotions above the run's thresholds
    clf.predict(texts, top_k=3, all_scores=True)      # the 3 most likely, and every score

Needs only the run directory (no training config): the model folder, thresholds.json and the
temperatures in the model spec. Texts are scored in length-sorted batches under
`torch.inference_mode`, in fp32 by default: the run's arrays and thresholds were computed in
fp32, so the predictor reproduces them on any machine. `precision="auto"` takes bf16 autocast
where the hardware runs it natively (faster; probabilities move by ~1e-3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emotion_lab.data.prompts import PromptFormat, truncate_texts
from emotion_lab.models.precision import cpu_has_native_bf16
from emotion_lab.rundir import load_model, read_json

log = logging.getLogger(__name__)


@torch.inference_mode()
def predict_probs(model: nn.Module, tokenizer, texts: list[str], max_length: int = 128,
                  batch_size: int = 64, single_label: bool = False,
                  temperatures: list[float] | None = None, device: str | torch.device = "cpu",
                  autocast: torch.dtype | None = None, progress=None) -> np.ndarray:
    """Probabilities for texts (sigmoid per label, divided by the run's fitted temperatures
    when it has them; softmax for single-label tasks), batched in length order, returned in
    input order. `autocast` (e.g. torch.bfloat16) runs the model under autocast on `device`;
    `progress(n)` is called after each batch with its size."""
    # Sort by token count, not characters: on GoEmotions' test texts, batches of 64 sorted by
    # characters carry 41% padding tokens, sorted by tokens 2%, and padding is compute.
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True,
                                             max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    device = torch.device(device)
    scale = None if temperatures is None else torch.tensor(temperatures, device=device)
    probs: dict[int, np.ndarray] = {}
    for idx in batches:
        # tokenising again costs ~3% of the forward passes; tokenizer.pad on the first
        # encoding would warn that it is the slower path for fast tokenizers
        enc = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        with torch.autocast(device.type, dtype=autocast or torch.float32,
                            enabled=autocast is not None):
            logits = model(input_ids=enc["input_ids"].to(device),
                           attention_mask=enc["attention_mask"].to(device)).logits
        logits = logits.float()
        if scale is not None:
            logits = logits / scale
        p = torch.softmax(logits, -1) if single_label else torch.sigmoid(logits)
        probs.update(zip(idx, p.cpu().numpy(), strict=True))
        if progress is not None:
            progress(len(idx))
    return np.stack([probs[i] for i in range(len(texts))])


class PredictError(ValueError):
    """Input the predictor cannot score; the message says which item and why."""


def fast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where it is native (recent GPUs, CPUs with AVX512-BF16 or AMX), else None: fp32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_native_bf16() else None


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """The classifier without PEFT wrappers: LoRA folded into the backbone's weights. Same
    scores, no low-rank matmuls per layer: benchmarks/predict_speed.py measured 1.06x the
    throughput (within noise) and lower single-text latency on a 2-core CPU."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


class EmotionClassifier:
    """A run's model, labels, thresholds and temperatures, ready to score texts."""

    def __init__(self, model: torch.nn.Module, tokenizer, labels: list[str],
                 thresholds: np.ndarray | None, temperatures: list[float] | None = None,
                 single_label: bool = False, max_length: int = 128, batch_size: int = 64,
                 device: str | None = None, precision: str = "fp32") -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer, self.labels = tokenizer, labels
        self.thresholds, self.temperatures = thresholds, temperatures
        self.single_label, self.max_length, self.batch_size = single_label, max_length, batch_size
        if precision not in ("auto", "fp32", "bf16"):
            raise PredictError(f"precision={precision}: choose auto, fp32 or bf16")
        self.autocast = {"auto": fast_dtype(self.device), "fp32": None,
                         "bf16": torch.bfloat16}[precision]
        # texts longer than this cannot fit max_length tokens anyway; cutting them first keeps
        # a 100,000-character input from costing a 100,000-character tokenization
        self.max_chars = 32 * max_length

    @classmethod
    def from_run(cls, run_dir: str | Path, **kwargs: Any) -> EmotionClassifier:
        """Load a run directory written by `python -m emotion_lab.train` (a generative run
        gives a GenerativeClassifier: the same answers, plus what the model wrote)."""
        run_dir = Path(run_dir)
        thresholds = read_json(run_dir / "thresholds.json")
        model, tokenizer, spec = load_model(run_dir / "model")
        model = merged(model)
        labels = spec["labels"]
        values = [thresholds.get(name) for name in labels]
        kind = GenerativeClassifier if spec.get("kind") == "generative" else cls
        clf = kind(model, tokenizer, labels,
                   None if None in values else np.array(values, dtype=np.float32),
                   spec.get("temperatures"), spec.get("problem_type") == "single_label",
                   int(spec["backbone"].get("max_length") or 128), **kwargs)
        clf.spec = spec
        clf.setup()
        return clf

    def setup(self) -> None:
        """What a subclass builds from the run's model spec (`self.spec`) once loaded."""

    def check_texts(self, texts: Sequence[Any]) -> list[str]:
        """The texts, cut to `max_chars`, or a PredictError naming every bad item."""
        not_str = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if not_str:
            raise PredictError(f"item(s) {not_str[:10]} are not strings (first is "
                               f"{type(texts[not_str[0]]).__name__}); send texts as strings.")
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise PredictError(f"item(s) {empty[:10]} are empty or whitespace only; there is "
                               f"nothing to classify (drop them or give text).")
        long = [i for i, t in enumerate(texts) if len(t) > self.max_chars]
        if long:
            log.warning("%d text(s) longer than %d characters (item %d has %d): the model reads "
                        "the first %d tokens of each", len(long), self.max_chars, long[0],
                        len(texts[long[0]]), self.max_length)
        return [t[:self.max_chars] for t in texts]

    def scores(self, texts: Sequence[str],
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(texts), num_labels) calibrated probabilities, in input order."""
        texts = self.check_texts(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.probabilities(texts, progress=progress)

    def probabilities(self, texts: list[str], batch_size: int | None = None,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        """`scores` without the checks: empty texts allowed (occlusion makes them)."""
        return predict_probs(self.model, self.tokenizer, texts, self.max_length,
                             batch_size or self.batch_size, self.single_label,
                             self.temperatures, self.device, self.autocast, progress)

    def decide(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """0/1 predictions: above the thresholds (or `threshold` for every label); the arg-max
        class for single-label runs."""
        if self.single_label:
            preds = np.zeros(probs.shape, dtype=bool)
            preds[np.arange(len(probs)), probs.argmax(axis=1)] = True
            return preds
        return probs >= (self.thresholds if threshold is None else threshold)

    def predict(self, texts: str | Sequence[str], top_k: int | None = None,
                threshold: float | None = None, all_scores: bool = False,
                progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Per text, {"emotions": [{"label", "score"}, ...]} best first: the labels above
        their thresholds (`threshold` overrides them all), or the `top_k` most probable
        whatever the thresholds; with `all_scores`, also {"scores": {label: p}}."""
        texts = self.check_options(texts, top_k, threshold)
        return self.results(self.scores(texts, progress), top_k, threshold, all_scores)

    @staticmethod
    def check_options(texts: str | Sequence[str], top_k: int | None,
                      threshold: float | None) -> Sequence[str]:
        """The texts as a list; a PredictError for a threshold or top_k out of range."""
        if threshold is not None and not 0 < threshold < 1:
            raise PredictError(f"threshold={threshold}: must lie strictly between 0 and 1")
        if top_k is not None and top_k < 1:
            raise PredictError(f"top_k={top_k}: must be at least 1")
        return [texts] if isinstance(texts, str) else texts

    def results(self, probs: np.ndarray, top_k: int | None, threshold: float | None,
                all_scores: bool) -> list[dict[str, Any]]:
        chosen = self.decide(probs, threshold)
        results = []
        for p, keep in zip(probs, chosen, strict=True):
            order = np.argsort(-p)
            picked = order[:top_k] if top_k is not None else [j for j in order if keep[j]]
            result: dict[str, Any] = {"emotions": [{"label": self.labels[j],
                                                    "score": float(p[j])} for j in picked]}
            if all_scores:
                result["scores"] = dict(zip(self.labels, map(float, p), strict=True))
            results.append(result)
        return results


class GenerativeClassifier(EmotionClassifier):
    """A generative run (model=generative): per-label scores from the model's likelihood of
    each label (thresholded as for a classifier), and the answer it writes, parsed into the
    labels it names and its rationale. `predict` adds {"answer", "written", "rationale"}."""

    def setup(self) -> None:
        from emotion_lab.models.generative import label_token_ids

        self.format = PromptFormat.from_config(self.spec["prompt"], self.labels)
        self.label_ids, self.label_mask = label_token_ids(self.tokenizer, self.format)
        self.max_new_tokens = int(self.spec["generation"]["max_new_tokens"])
        self.tokenizer.padding_side = "left"  # prompts are continued on the right

    def answer(self, texts: list[str], batch_size: int | None = None,
               progress: Callable[[int], None] | None = None,
               generate: bool = True) -> tuple[np.ndarray, list[str]]:
        """(calibrated per-label scores, generated answers) in input order."""
        from emotion_lab.evaluation.calibration import apply_temperature
        from emotion_lab.models.generative import generate_answers, scores_from_prompts

        size = batch_size or self.batch_size
        probs, answers = [], []
        for start in range(0, len(texts), size):
            chunk = texts[start:start + size]
            prompts = [self.format.prompt(t) for t in truncate_texts(self.tokenizer, chunk,
                                                                       self.max_length)]
            enc = self.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                written = generate_answers(self.model, self.tokenizer, enc["input_ids"],
                                           enc["attention_mask"], self.max_new_tokens) \
                    if generate else [""] * len(chunk)
                scores = scores_from_prompts(self.model, self.tokenizer, self.format,
                                             enc["input_ids"], enc["attention_mask"],
                                             written if generate else None, self.label_ids,
                                             self.label_mask)
            probs.append(scores.float().cpu().numpy())
            answers.extend(written)
            if progress is not None:
                progress(len(chunk))
        out = np.concatenate(probs) if probs else np.zeros((0, len(self.labels)), np.float32)
        if self.temperatures is not None:
            out = apply_temperature(out, np.asarray(self.temperatures))
        return out, answers

    def probabilities(self, texts: list[str], batch_size: int | None = None,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        # with the rationale first, label scores read the model's own rationale
        return self.answer(texts, batch_size, progress,
                           generate=self.format.rationale == "before")[0]

    def predict(self, texts: str | Sequence[str], top_k: int | None = None,
                threshold: float | None = None, all_scores: bool = False,
                progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """As EmotionClassifier.predict, plus per text: "answer" (what the model wrote),
        "written" (the labels it names) and "rationale" ("" when it gave none)."""
        texts = self.check_options(texts, top_k, threshold)
        checked = self.check_texts(texts)
        probs, answers = self.answer(checked, progress=progress) if checked else (
            np.zeros((0, len(self.labels)), np.float32), [])
        results = self.results(probs, top_k, threshold, all_scores)
        for result, text in zip(results, answers, strict=True):
            parsed = self.format.parse(text)
            result |= {"answer": text.strip(), "written": parsed.labels,
                       "rationale": parsed.rationale}
        return results

