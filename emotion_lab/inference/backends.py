"""Where a run's forward passes happen: torch (any device, bf16 autocast where native) or an
exported ONNX file on ONNX Runtime (CPU). Both answer the same call, `model(input_ids=...,
attention_mask=...).logits`, so one predictor drives either."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from emotion_lab.data.types import Problem
from emotion_lab.errors import PredictError
from emotion_lab.evaluation.calibration import apply_temperature
from emotion_lab.models.kinds import HeadScorer
from emotion_lab.models.precision import cpu_has_native_bf16

PRECISIONS = ("auto", "fp32", "bf16")


def device_of(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype forward passes autocast to; None: fp32. `auto`: bf16 where it is native
    (recent GPUs, CPUs with AVX512-BF16 or AMX), else fp32."""
    if precision not in PRECISIONS:
        raise PredictError(f"precision={precision}: choose auto, fp32 or bf16")
    if precision == "auto":
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" \
            else cpu_has_native_bf16()
        return torch.bfloat16 if native else None
    return torch.bfloat16 if precision == "bf16" else None


def predict_probs(model: Any, tokenizer, texts: list[str], max_length: int = 128,
                  batch_size: int = 64, single_label: bool = False,
                  temperatures: list[float] | None = None, device: str | torch.device = "cpu",
                  autocast: torch.dtype | None = None, progress=None) -> np.ndarray:
    """A classifier's probabilities for texts, in input order (the run's temperatures applied
    when given): the scorer the predictor uses, callable on a bare model."""
    problem = Problem("single_label" if single_label else "multi_label")
    scorer = HeadScorer(model, tokenizer, max_length, problem, torch.device(device), autocast)
    probs = scorer(list(texts), batch_size, progress)[0]
    return probs if temperatures is None else apply_temperature(probs, np.asarray(temperatures))


class OnnxModel:
    """An ONNX Runtime session that answers like a torch classifier (`.logits`)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        logits = self.session.run(["logits"], {"input_ids": input_ids.numpy(),
                                               "attention_mask": attention_mask.numpy()})[0]
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def to(self, device: Any) -> OnnxModel:  # the session runs where it was made
        return self

    def eval(self) -> OnnxModel:
        return self
