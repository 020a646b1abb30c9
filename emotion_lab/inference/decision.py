"""A run's temperatures and thresholds, applied one way wherever a run's scores are used:
the predictor (on torch or ONNX Runtime) and the export's check against it. The run's own
arrays were calibrated with the same function (evaluation.calibration.apply_temperature)
when it was trained, so anything that loads the run reproduces them."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from emotion_lab.data.types import Problem
from emotion_lab.errors import PredictError
from emotion_lab.evaluation.calibration import apply_temperature

UNSET = {"top_k": "every label above its threshold", "batch_size": "the predictor's own",
         "threshold": "the run's thresholds"}


@dataclass
class Decision:
    """From raw scores to calibrated probabilities to the labels a run predicts."""

    problem: Problem
    thresholds: np.ndarray | None  # None: single-label (arg-max) runs
    temperatures: np.ndarray | None = None  # None: the run was not calibrated

    @classmethod
    def of_run(cls, spec: dict, thresholds: dict[str, float | None]) -> Decision:
        """From a model spec (labels, problem type, temperatures) and thresholds.json."""
        values = [thresholds.get(name) for name in spec["labels"]]
        temperatures = spec.get("temperatures")
        return cls(Problem(spec["problem_type"]),
                   None if None in values else np.array(values, dtype=np.float32),
                   None if temperatures is None else np.asarray(temperatures))

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        return probs if self.temperatures is None else apply_temperature(probs,
                                                                         self.temperatures)

    def choose(self, probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """0/1 predictions: at or above the thresholds (or `threshold` for every label); the
        arg-max class for single-label runs."""
        return self.problem.choose(probs, self.thresholds if threshold is None else threshold)


def check_options(top_k: int | None = None, threshold: float | None = None,
                  batch_size: int | None = None) -> None:
    """A PredictError naming a top_k, threshold or batch_size the predictor cannot use (None:
    not given)."""
    for name, value in (("top_k", top_k), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)
                                  or value < 1):
            raise PredictError(f"{name}={value!r}: must be a whole number of at least 1 "
                               f"(or None: {UNSET[name]})")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, Real)
                                  or not 0 < threshold < 1):
        raise PredictError(f"threshold={threshold!r}: must be a number strictly between 0 and 1 "
                           f"(or None: {UNSET['threshold']})")
