"""Apply a trained run: `EmotionClassifier.from_run(run_dir).predict(texts)`.

    from emotion_lab.inference import EmotionClassifier
    clf = EmotionClassifier.from_run("outputs/train/runs/2026-11-22_08-00-00")
    clf.predict("Thank you so much!")                 # emotions above the run's thresholds
    clf.predict(texts, top_k=3, all_scores=True)      # the 3 most likely, and every score

Needs only the run directory (no training config, no Lightning): the model folder,
thresholds.json and the temperatures in the model spec. The run's kind (models/kinds.py)
scores the texts: a classifier in length-sorted batches, a generative model by its labels'
likelihoods, adding what it wrote. Scores are computed in fp32 by default: the run's arrays
and thresholds were, so the predictor reproduces them on any machine. `precision="auto"`
takes bf16 autocast where the hardware runs it natively (faster; scores move by ~1e-3).
"""

from __future__ import annotations

import logging
import reprlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emotion_lab.errors import PredictError, RunDirError
from emotion_lab.inference.backends import OnnxModel, autocast_dtype, device_of
from emotion_lab.inference.decision import Decision, check_options
from emotion_lab.models.kinds import kind_of
from emotion_lab.models.saving import load_model, read_model_spec
from emotion_lab.rundir import EXPORT, check_run_dir, check_temperatures, read_json, read_thresholds

log = logging.getLogger(__name__)


def as_texts(texts: Any) -> list[str]:
    """`texts` as a list of strings (one string: a list of one; a numpy array or pandas Series
    of strings: its values), or a PredictError naming what is wrong."""
    if isinstance(texts, str):
        return [texts]
    if hasattr(texts, "tolist"):
        texts = texts.tolist()
    if not isinstance(texts, (list, tuple)):
        raise PredictError(f"texts={reprlib.repr(texts)}: give a string or a list of strings, "
                           f"not {type(texts).__name__}.")
    not_str = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if not_str:
        raise PredictError(f"texts: item(s) {not_str[:10]} are not strings (first is "
                           f"{type(texts[not_str[0]]).__name__}); send texts as strings.")
    return list(texts)


class EmotionClassifier:
    """A run's model, labels, thresholds and temperatures, ready to score texts. `model`: a
    torch module, or a backend that answers like one (inference/backends.OnnxModel)."""

    def __init__(self, model: Any, tokenizer, spec: dict[str, Any],
                 thresholds: dict[str, float | None], batch_size: int = 64,
                 device: str | None = None, precision: str = "fp32") -> None:
        check_options(batch_size=batch_size)
        self.device = device_of(device)
        self.autocast = autocast_dtype(precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer, self.spec, self.labels = tokenizer, spec, list(spec["labels"])
        self.kind = kind_of(spec["kind"])
        self.decision = Decision.of_run(spec, thresholds)
        self.thresholds, self.problem = self.decision.thresholds, self.decision.problem
        self.temperatures = spec.get("temperatures")
        self.batch_size = batch_size
        self.max_length = int(spec["backbone"].get("max_length") or 128)
        self.scorer = self.kind.scorer(self.model, tokenizer, spec, self.device, self.autocast)
        # texts longer than this cannot fit max_length tokens anyway; cutting them first keeps
        # a 100,000-character input from costing a 100,000-character tokenization
        self.max_chars = 32 * self.max_length

    @classmethod
    def from_run(cls, run_dir: str | Path, merge: bool = True, **kwargs: Any) -> EmotionClassifier:
        """Load a run directory written by `python -m emotion_lab.train`. `merge`: fold LoRA
        into the backbone (same scores; benchmarks/predict_speed.py measured 1.06x the
        throughput, within noise, and lower single-text latency on a 2-core CPU)."""
        run_dir = check_run_dir(run_dir)
        spec = read_model_spec(run_dir / "model")  # checked before anything loads
        thresholds = read_thresholds(run_dir / "thresholds.json", spec["labels"],
                                     spec["problem_type"] == "single_label")
        model, tokenizer, spec = load_model(run_dir / "model", merge=merge)
        return cls(model, tokenizer, spec, thresholds, **kwargs)

    def check_texts(self, texts: str | Sequence[str]) -> list[str]:
        """The texts, cut to `max_chars`, or a PredictError naming every bad item."""
        texts = as_texts(texts)
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
        return self.score(self.check_texts(texts), progress, answers=False)[0]

    def probabilities(self, texts: list[str], batch_size: int | None = None,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        """`scores` without the emptiness check: empty texts allowed (occlusion makes them)."""
        return self.score(texts, progress, batch_size, answers=False)[0]

    def score(self, texts: list[str], progress: Callable[[int], None] | None = None,
              batch_size: int | None = None,
              answers: bool = True) -> tuple[np.ndarray, dict[str, list]]:
        """Calibrated probabilities and the kind's per-text extras."""
        texts = as_texts(texts)
        check_options(batch_size=batch_size)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32), {}
        probs, extras = self.scorer(texts, batch_size or self.batch_size, progress, answers)
        return self.decision.calibrate(probs), extras

    def decide(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """0/1 predictions: above the thresholds (or `threshold` for every label); the arg-max
        class for single-label runs."""
        return self.decision.choose(probs, threshold)

    def predict(self, texts: str | Sequence[str], top_k: int | None = None,
                threshold: float | None = None, all_scores: bool = False,
                progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Per text, {"emotions": [{"label", "score"}, ...]} best first: the labels above
        their thresholds (`threshold` overrides them all), or the `top_k` most probable
        whatever the thresholds; with `all_scores`, also {"scores": {label: p}}. A generative
        run adds "answer" (what it wrote), "written" (the labels it names) and "rationale"."""
        check_options(top_k, threshold)
        probs, extras = self.score(self.check_texts(texts), progress)
        return self.results(probs, extras, top_k, threshold, all_scores)

    def results(self, probs: np.ndarray, extras: dict[str, list], top_k: int | None = None,
                threshold: float | None = None,
                all_scores: bool = False) -> list[dict[str, Any]]:
        """What `predict` returns, from scores already computed (the service's batcher
        scores many requests' texts at once, then answers each)."""
        chosen = self.decide(probs, threshold)
        results = []
        for i, (p, keep) in enumerate(zip(probs, chosen, strict=True)):
            order = np.argsort(-p)
            picked = order[:top_k] if top_k is not None else [j for j in order if keep[j]]
            result: dict[str, Any] = {"emotions": [{"label": self.labels[j],
                                                    "score": float(p[j])} for j in picked]}
            if all_scores:
                result["scores"] = dict(zip(self.labels, map(float, p), strict=True))
            results.append(result | self.scorer.describe(extras, i))
        return results


def load_onnx(export_dir: str | Path, file: str = "model.onnx", **kwargs: Any) -> EmotionClassifier:
    """An EmotionClassifier whose scores come from an exported ONNX file (CPU), with the
    run's temperatures and thresholds applied as for the run itself."""
    from transformers import AutoTokenizer

    export_dir = Path(export_dir)
    path = export_dir / "emotion_lab_onnx.json"
    meta = read_json(path, ("labels", "thresholds", "problem_type", "max_length",
                            "temperatures"), EXPORT)
    thresholds = read_thresholds(path, meta["labels"], meta["problem_type"] == "single_label",
                                 meta["thresholds"], EXPORT)
    check_temperatures(meta["temperatures"], meta["labels"], path, EXPORT)
    if not (export_dir / file).is_file():
        raise RunDirError(f"{export_dir / file}: missing (quantize=true writes model.int8.onnx)")
    spec = {"kind": "classifier", "labels": meta["labels"],
            "problem_type": meta["problem_type"], "temperatures": meta["temperatures"],
            "backbone": {"max_length": meta["max_length"]}}
    return EmotionClassifier(OnnxModel(export_dir / file),
                             AutoTokenizer.from_pretrained(export_dir), spec,
                             thresholds, device="cpu", precision="fp32", **kwargs)
