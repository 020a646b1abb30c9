"""One place that turns (probs, labels, thresholds) into the metrics every face reports."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multilabel_average_precision,
    multilabel_stat_scores,
)

from emotion_lab.evaluation.calibration import brier_per_label, ece_per_label

# The fixed thresholds published GoEmotions numbers use, reported beside the run's policy.
FIXED_THRESHOLDS = (0.3, 0.5)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, dtype=float), where=den > 0)


def _counts(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-label (tp, fp, tn, fn, support) as an (L, 5) float array."""
    preds = torch.from_numpy(probs >= thresholds[None, :]).int()
    target = torch.from_numpy(labels).int()
    return multilabel_stat_scores(preds, target, num_labels=labels.shape[1],
                                  average=None).numpy().astype(float)


def f1_scores(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict:
    """Per-label precision/recall/F1 arrays and macro/micro F1 at the given thresholds."""
    tp, fp, _, fn, support = _counts(probs, labels, thresholds).T
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    micro = _ratio(np.array(2 * tp.sum()), np.array(2 * tp.sum() + fp.sum() + fn.sum()))
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "macro_f1": float(f1.mean()), "micro_f1": float(micro),
            "macro_precision": float(precision.mean()), "macro_recall": float(recall.mean())}


def pr_auc_per_label(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision per label; NaN for a label with no positive example."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about labels with no positives
        ap = multilabel_average_precision(torch.from_numpy(probs).float(),
                                          torch.from_numpy(labels).int(),
                                          num_labels=labels.shape[1], average=None).numpy()
    ap = ap.astype(float)
    ap[labels.sum(axis=0) == 0] = np.nan
    return ap


def argmax_one_hot(probs: np.ndarray) -> np.ndarray:
    """Single-label predictions: the most probable class, as a one-hot matrix."""
    preds = np.zeros(probs.shape, dtype=float)
    preds[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
    return preds


def evaluate(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None,
             label_names: list[str], prefix: str) -> tuple[dict[str, float], list[dict]]:
    """(summary metrics named `prefix/metric`, one row per label) for one split.

    `thresholds=None` means a single-label task: the prediction is the arg-max class, and
    accuracy is reported (micro-F1 equals it). Macro scores average over every label; macro
    PR-AUC (one-vs-rest for single-label tasks) skips labels without positives. ECE (15
    equal-width bins) and Brier treat each label as its own binary problem.
    """
    single_label = thresholds is None
    if single_label:
        scores = f1_scores(argmax_one_hot(probs), labels, np.full(labels.shape[1], 0.5))
    else:
        scores = f1_scores(probs, labels, thresholds)
    ap = pr_auc_per_label(probs, labels)
    summary = {f"{prefix}/{k}": scores[k]
               for k in ("macro_f1", "micro_f1", "macro_precision", "macro_recall")}
    summary[f"{prefix}/macro_pr_auc"] = float(np.nanmean(ap)) if np.isfinite(ap).any() else 0.0
    ece, brier = ece_per_label(probs, labels), brier_per_label(probs, labels)
    summary[f"{prefix}/macro_ece"] = float(ece.mean())
    summary[f"{prefix}/macro_brier"] = float(brier.mean())
    if single_label:
        summary[f"{prefix}/accuracy"] = float((probs.argmax(1) == labels.argmax(1)).mean())
    for t in () if single_label else FIXED_THRESHOLDS:
        at_t = f1_scores(probs, labels, np.full(labels.shape[1], t))
        summary[f"{prefix}/macro_f1_at_{t}"] = at_t["macro_f1"]
        summary[f"{prefix}/micro_f1_at_{t}"] = at_t["micro_f1"]
    rows = [{"label": name, "support": int(scores["support"][i]),
             "precision": float(scores["precision"][i]), "recall": float(scores["recall"][i]),
             "f1": float(scores["f1"][i]), "pr_auc": float(ap[i]),
             "ece": float(ece[i]), "brier": float(brier[i]),
             "threshold": None if single_label else float(thresholds[i])}
            for i, name in enumerate(label_names)]
    return summary, rows


def frequency_baseline(train_frequencies: np.ndarray, labels: np.ndarray, seed: int = 0,
                       single_label: bool = False) -> float:
    """Macro-F1 of a model that ignores the text: each label predicted at random with its
    training frequency (single-label: one class drawn by frequency). Any trained model
    should beat it."""
    rng = np.random.default_rng(seed)
    if single_label:
        drawn = rng.choice(len(train_frequencies), size=len(labels),
                           p=train_frequencies / train_frequencies.sum())
        random_probs = np.eye(len(train_frequencies))[drawn]
    else:
        random_probs = (rng.random(labels.shape) < train_frequencies[None, :]).astype(float)
    return f1_scores(random_probs, labels, np.full(labels.shape[1], 0.5))["macro_f1"]
