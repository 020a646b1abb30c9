"""Where a run goes wrong: its most confident mistakes per label, the label pairs it confuses,
and predicted-against-true label counts. Pure functions of (probs, labels, thresholds)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd


def predictions(probs: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """0/1 predictions: above each label's threshold, or the arg-max class (single-label)."""
    if thresholds is None:
        preds = np.zeros(probs.shape, dtype=int)
        preds[np.arange(len(probs)), probs.argmax(axis=1)] = 1
        return preds
    return (probs >= thresholds[None, :]).astype(int)


def confident_errors(probs: np.ndarray, labels: np.ndarray, preds: np.ndarray,
                     label_names: list[str], texts: list[str] | None,
                     per_label: int = 3) -> pd.DataFrame:
    """Per label, the false positives with the highest probability and the false negatives
    with the lowest: the mistakes the model was surest of."""
    rows = []
    for j, name in enumerate(label_names):
        fp = np.flatnonzero((preds[:, j] == 1) & (labels[:, j] == 0))
        fn = np.flatnonzero((preds[:, j] == 0) & (labels[:, j] == 1))
        for kind, index in (("false positive", fp[np.argsort(-probs[fp, j])]),
                            ("false negative", fn[np.argsort(probs[fn, j])])):
            for i in index[:per_label]:
                rows.append({
                    "label": name, "kind": kind, "probability": float(probs[i, j]),
                    "true": ", ".join(label_names[k] for k in np.flatnonzero(labels[i])),
                    "predicted": ", ".join(label_names[k] for k in np.flatnonzero(preds[i])),
                    "index": int(i), "text": texts[i] if texts is not None else None})
    return pd.DataFrame(rows, columns=["label", "kind", "probability", "true", "predicted",
                                       "index", "text"])


def confused_pairs(labels: np.ndarray, preds: np.ndarray, label_names: list[str],
                   top: int = 15) -> pd.DataFrame:
    """Pairs (predicted a, true b) where an example got a but not b, and has b but not a:
    the model said a where it should have said b. Counted once per example and pair."""
    wrong_in, missed = (preds == 1) & (labels == 0), (labels == 1) & (preds == 0)
    counts: Counter[tuple[int, int]] = Counter()
    for i in np.flatnonzero(wrong_in.any(axis=1) & missed.any(axis=1)):
        counts.update((a, b) for a in np.flatnonzero(wrong_in[i])
                      for b in np.flatnonzero(missed[i]))
    support = labels.sum(axis=0)
    rows = [{"predicted": label_names[a], "true": label_names[b], "examples": n,
             "share_of_true": n / support[b] if support[b] else float("nan")}
            for (a, b), n in counts.most_common(top)]
    return pd.DataFrame(rows, columns=["predicted", "true", "examples", "share_of_true"])


def true_vs_predicted(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """(L, L) share of the examples carrying true label i that were predicted label j (rows
    sum to more than 1 where examples get several labels); the diagonal is each recall."""
    counts = labels.T.astype(float) @ preds.astype(float)
    support = labels.sum(axis=0).astype(float)[:, None]
    return np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
