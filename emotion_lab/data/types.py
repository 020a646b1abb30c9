"""The shared types every data source hands to training: labelled splits and the error for
input that cannot be used. Everything else in emotion_lab.data builds on these.

Sources (goemotions, raters, local_files, hub_text, prepared) return `LabelledData`; cleaning
and taxonomies map `LabelledData` to `LabelledData`; the DataModule tokenises its splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from emotion_lab.errors import DataError

SPLITS = ("train", "val", "test")
PROBLEM_TYPES = ("multi_label", "single_label")


@dataclass(frozen=True)
class Problem:
    """What a task's labels are, asked in one place: multi-label (any number of labels per
    text: sigmoid per label, BCE, per-label thresholds) or single-label (exactly one class:
    softmax, cross-entropy, the arg-max class; threshold policies and calibration do not
    apply)."""

    name: str = "multi_label"

    def __post_init__(self) -> None:
        if self.name not in PROBLEM_TYPES:
            raise DataError(f"problem_type={self.name!r}: expected one of "
                            f"{', '.join(PROBLEM_TYPES)}")

    @property
    def single_label(self) -> bool:
        return self.name == "single_label"

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1) if self.single_label else torch.sigmoid(logits)

    def choose(self, probs: np.ndarray, thresholds: np.ndarray | float | None) -> np.ndarray:
        """0/1 decisions: the arg-max class, or every label at or above its threshold."""
        if self.single_label:
            chosen = np.zeros(probs.shape, dtype=bool)
            chosen[np.arange(len(probs)), probs.argmax(axis=1)] = True
            return chosen
        return probs >= thresholds



@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # (N, num_labels) float32 multi-hot; one-hot for single-label tasks
    ids: list[str]
    # why the labels hold, one text per example ("" where none was kept): written by
    # `python -m emotion_lab.rationales`, taught by generative models; None: no such column
    rationales: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int | None) -> Split:
        if n is None or n >= len(self.texts):
            return self
        return Split(self.texts[:n], self.labels[:n], self.ids[:n],
                     None if self.rationales is None else self.rationales[:n])

    def select(self, indices: np.ndarray | list[int]) -> Split:
        indices = np.asarray(indices, dtype=int)
        return Split([self.texts[i] for i in indices], self.labels[indices],
                     [self.ids[i] for i in indices],
                     None if self.rationales is None else [self.rationales[i] for i in indices])


@dataclass
class LabelledData:
    splits: dict[str, Split]  # train, val, test
    label_names: list[str]
    problem_type: str = "multi_label"  # multi_label: sigmoid + BCE; single_label: softmax + CE
    source: str = ""
    report: dict[str, Any] = field(default_factory=dict)  # what the source did (raters, splits)

    @property
    def problem(self) -> Problem:
        return Problem(self.problem_type)

    @property
    def single_label(self) -> bool:
        return self.problem.single_label


def label_frequencies(labels: np.ndarray) -> np.ndarray:
    """Share of examples carrying each label."""
    return labels.mean(axis=0)
