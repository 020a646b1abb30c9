"""Calibration: expected calibration error, Brier score, and temperature scaling fitted on
validation probabilities only.

Each label is its own binary problem (a multi-label model gives one sigmoid per label):
ECE is torchmetrics' binary calibration error with equal-width bins, per label, and macro
ECE is their mean. Temperature scaling divides each logit by T (one T for all labels, or
one per label), T fitted by minimising BCE on validation.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import binary_calibration_error

EPS = 1e-6


def ece_per_label(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """Expected calibration error of each label (equal-width bins, L1)."""
    p, y = torch.from_numpy(probs).float(), torch.from_numpy(labels).int()
    return np.array([float(binary_calibration_error(p[:, j].contiguous(), y[:, j].contiguous(),
                                                    n_bins=n_bins, norm="l1"))
                     for j in range(probs.shape[1])])


def brier_per_label(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean squared error between each label's probability and its 0/1 truth."""
    return ((probs - labels) ** 2).mean(axis=0)


def logits_of(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def apply_temperature(probs: np.ndarray, temperature: np.ndarray | float) -> np.ndarray:
    """Probabilities with each label's logit divided by its temperature."""
    return (1 / (1 + np.exp(-logits_of(probs) / np.asarray(temperature)))).astype(probs.dtype)


def fit_temperature(probs: np.ndarray, labels: np.ndarray, per_label: bool = False,
                    max_iter: int = 200) -> np.ndarray:
    """Temperatures (one per label; all equal unless `per_label`) minimising validation BCE.

    Optimises log T with L-BFGS, so T stays positive. Fit on validation only."""
    logits = torch.from_numpy(logits_of(probs))
    target = torch.from_numpy(labels.astype(np.float64))
    log_t = torch.zeros(probs.shape[1] if per_label else 1, dtype=torch.float64,
                        requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], max_iter=max_iter, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(logits / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    t = log_t.detach().exp().numpy()
    return np.broadcast_to(t, (probs.shape[1],)).copy()


def reliability_bins(probs: np.ndarray, labels: np.ndarray,
                     n_bins: int = 15) -> dict[str, np.ndarray]:
    """Every (example, label) pair pooled into equal-width probability bins: per bin the mean
    predicted probability, the observed positive rate, and the count (empty bins: NaN, 0)."""
    p, y = probs.ravel().astype(float), labels.ravel().astype(float)
    index = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=p, minlength=n_bins) / count
        observed = np.bincount(index, weights=y, minlength=n_bins) / count
    return {"edges": np.linspace(0, 1, n_bins + 1), "confidence": confidence,
            "observed": observed, "count": count}
