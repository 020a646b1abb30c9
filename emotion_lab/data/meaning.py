"""Cleaning by meaning: training examples whose labels disagree with what the text says (label
issues), and texts far from every other text (outliers), both found from sentence embeddings.

The embeddings come from above: cleaning receives an `Embed` callable (texts -> (N, d)
array), built by the prepare face from the frozen backbone (models.sentence_embeddings,
cached like the frozen head's features). The data layer sits below the models, so it never
loads one itself; a test passes a bag-of-words embedding instead.

Label issues: out-of-sample probabilities for every example from a cheap model (logistic
regression per label, `folds`-fold cross-validation on the embeddings), then cleanlab's
confident learning (`cleanlab.filter.find_label_issues(..., multi_label=True)`), ranked by
its label-quality score (`cleanlab.multilabel_classification.get_label_quality_scores`, 0 to
1, low: likely mislabelled). cleanlab because it is the field's library for this: confident
learning (Northcutt et al., 2021) estimates each label's noise rates from out-of-sample
probabilities, so a threshold is per label and fitted to the data, not a guessed global
cut-off, and its multi-label mode treats each label as its own one-vs-rest problem, which is
what GoEmotions is. `max_share` caps how much of the split may go: the lowest-scored first.
The score is computed with `adjust_pred_probs=True` (each label's probabilities less its
average self-confidence): unadjusted, the lowest 5% of GoEmotions were 86% multi-label
examples (13% of the split) and took up to 30% of a rare label's examples (relief,
nervousness), because a rare label's probability is low wherever it is given; adjusted,
14% are multi-label and no label loses more than 10% (docs/data.md).

Outliers: mean cosine distance of each text's embedding to its `k` nearest neighbours in the
same split (scikit-learn NearestNeighbors, brute force), flagged above the split's `quantile`
of that distance. cleanlab's OutOfDistribution computes the same mean k-NN distance with the
same scikit-learn class and only maps it through exp(-d): the ranking is identical, and the
plain distance is a number a reviewer can read (0: the same text, 1: unrelated).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from emotion_lab.data.types import DataError, Split

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], np.ndarray]  # texts -> (N, d) embeddings, in the texts' order
RULES: dict[str, dict[str, Any]] = {
    "label_issues": {"enabled": False, "folds": 5, "max_share": 0.05},
    "outliers": {"enabled": False, "k": 10, "quantile": 0.99},
}
SUGGEST_AT = 0.5  # a label is suggested where its out-of-sample probability reaches this


def check_rules(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The two rules' settings over their defaults; a DataError names a bad one."""
    checked = {}
    for name, defaults in RULES.items():
        given = rules.get(name) or {}
        if not isinstance(given, dict):
            raise DataError(f"data.clean.{name}={given}: expected settings "
                            f"{{{', '.join(f'{k}: ...' for k in defaults)}}}.")
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise DataError(f"data.clean.{name}: unknown setting(s) {unknown}; known: "
                            f"{sorted(defaults)}.")
        checked[name] = {**defaults, **given}
        if not isinstance(checked[name]["enabled"], bool):
            raise DataError(f"data.clean.{name}.enabled={checked[name]['enabled']}: expected "
                            f"true or false.")
    folds, share = checked["label_issues"]["folds"], checked["label_issues"]["max_share"]
    k, quantile = checked["outliers"]["k"], checked["outliers"]["quantile"]
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise DataError(f"data.clean.label_issues.folds={folds}: expected an integer >= 2.")
    if share is not None and not (isinstance(share, int | float) and 0 < share < 1):
        raise DataError(f"data.clean.label_issues.max_share={share}: expected a share between "
                        f"0 and 1 (exclusive), or null to remove every issue cleanlab finds.")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise DataError(f"data.clean.outliers.k={k}: expected an integer >= 1.")
    if not (isinstance(quantile, int | float) and 0 < quantile < 1):
        raise DataError(f"data.clean.outliers.quantile={quantile}: expected a number between "
                        f"0 and 1 (exclusive), e.g. 0.99 flags the farthest 1%.")
    return checked


def normalized_embeddings(embed: Embed, texts: list[str]) -> np.ndarray:
    """(N, d) float32, each row of unit length (cosine geometry, as sentence-transformers are
    trained and used)."""
    vectors = np.asarray(embed(texts), dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise DataError(f"the embedding gave shape {vectors.shape} for {len(texts)} texts; "
                        f"expected ({len(texts)}, d).")
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def out_of_sample_probs(x: np.ndarray, labels: np.ndarray, folds: int,
                        seed: int) -> np.ndarray:
    """(N, L) probabilities, each row from a model that never saw that example: per fold
    and label a logistic regression on the other folds' standardised embeddings (a label
    absent from those folds gets its share there, zero). Standardised: on unit-length
    embeddings the default regularisation leaves the probabilities near the priors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    if len(x) < folds:
        raise DataError(f"data.clean.label_issues.folds={folds}: the training split has only "
                        f"{len(x)} examples; use fewer folds.")
    probs = np.zeros(labels.shape, dtype=np.float64)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(x))
    with tqdm(total=folds * labels.shape[1], desc="label issues: cross-validation",
              leave=False) as bar:
        for fit, held in splits:
            scaler = StandardScaler().fit(x[fit])
            x_fit, x_held = scaler.transform(x[fit]), scaler.transform(x[held])
            for j in range(labels.shape[1]):
                y = labels[fit, j]
                if y.min() == y.max():  # no positive (or no negative) to learn from
                    probs[held, j] = y[0]
                else:
                    model = LogisticRegression(C=1.0, max_iter=300)
                    probs[held, j] = model.fit(x_fit, y).predict_proba(x_held)[:, 1]
                bar.update()
    return probs


def label_issues(x: np.ndarray, labels: np.ndarray, folds: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(issue mask, label-quality score per example, out-of-sample probabilities)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification import get_label_quality_scores

    probs = out_of_sample_probs(x, labels, folds, seed)
    given = [np.flatnonzero(row).tolist() for row in labels]
    issues = find_label_issues(given, probs, multi_label=True, n_jobs=1)
    quality = get_label_quality_scores(given, probs, adjust_pred_probs=True)
    return np.asarray(issues, bool), np.asarray(quality, np.float64), probs


def outlier_distances(x: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine distance of each row to its k nearest other rows."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(x) - 1)
    if k < 1:
        raise DataError("data.clean.outliers needs at least 2 training examples.")
    index = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x)
    distances = []
    for start in tqdm(range(0, len(x), 4096), desc="outliers: neighbours", leave=False):
        d, _ = index.kneighbors(x[start:start + 4096])
        distances.append(d[:, 1:].mean(axis=1))  # column 0: the text itself
    return np.concatenate(distances)


@dataclass
class Flags:
    """What cleaning by meaning found in one split: removal masks, scores, review rows."""

    label_issue: np.ndarray  # removed as a label issue (cleanlab's, capped by max_share)
    outlier: np.ndarray      # removed as an outlier
    found: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    # every example's label quality (low: likely mislabelled) and outlier distance
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    review: list[dict[str, Any]] = field(default_factory=list)


def _names(row: np.ndarray, label_names: list[str]) -> str:
    return ", ".join(label_names[j] for j in np.flatnonzero(row))


def flag(split: Split, label_names: list[str], rules: dict[str, dict[str, Any]],
         embed: Embed, seed: int) -> Flags:
    """Embed `split` once, then run whichever of the two rules is enabled."""
    n = len(split)
    flags = Flags(np.zeros(n, bool), np.zeros(n, bool))
    issues_rule, outlier_rule = rules["label_issues"], rules["outliers"]
    start = time.perf_counter()
    x = normalized_embeddings(embed, split.texts)
    flags.details["embed_seconds"] = round(time.perf_counter() - start, 1)
    flags.details["read_per_label"] = dict(zip(label_names,
                                               split.labels.sum(axis=0).astype(int).tolist(),
                                               strict=True))
    quality = distance = probs = None
    found_issue = above = np.zeros(n, bool)
    if issues_rule["enabled"]:
        start = time.perf_counter()
        found_issue, quality, probs = label_issues(x, split.labels, issues_rule["folds"], seed)
        flags.label_issue = found_issue.copy()
        share = issues_rule["max_share"]
        if share is not None and found_issue.sum() > int(share * n):
            worst = np.flatnonzero(found_issue)[np.argsort(quality[found_issue],
                                                           kind="stable")][:int(share * n)]
            flags.label_issue = np.zeros(n, bool)
            flags.label_issue[worst] = True
        flags.found["label_issues"] = int(found_issue.sum())
        flags.scores["label_quality"] = quality
        flags.details["label_issue_seconds"] = round(time.perf_counter() - start, 1)
    if outlier_rule["enabled"]:
        start = time.perf_counter()
        distance = outlier_distances(x, outlier_rule["k"])
        cut = float(np.quantile(distance, outlier_rule["quantile"]))
        above = distance > cut
        flags.outlier = above
        flags.found["outliers"] = int(above.sum())
        flags.scores["outlier_distance"] = distance
        flags.details |= {"outlier_distance_cut": round(cut, 4),
                          "outlier_seconds": round(time.perf_counter() - start, 1)}
    for i in np.flatnonzero(found_issue | above):
        reasons = [r for r, hit in (("label_issue", found_issue[i]), ("outlier", above[i]))
                   if hit]
        suggested = "" if probs is None else _names(probs[i] >= SUGGEST_AT, label_names) \
            or label_names[int(probs[i].argmax())]
        flags.review.append({
            "id": split.ids[i], "text": split.texts[i],
            "given_labels": _names(split.labels[i], label_names),
            "suggested_labels": suggested, "reason": "+".join(reasons),
            "label_quality": None if quality is None else round(float(quality[i]), 4),
            "outlier_distance": None if distance is None else round(float(distance[i]), 4),
            "removed": bool(flags.label_issue[i] or flags.outlier[i])})
    flags.review.sort(key=lambda r: (r["reason"] == "outlier", r["label_quality"] or 0.0,
                                     -(r["outlier_distance"] or 0.0)))
    return flags


def flagged_per_label(review: list[dict[str, Any]], read: dict[str, int]) -> Any:
    """A table, one row per label: flagged examples carrying it, by what became of them
    (removed as a label issue, removed as an outlier, flagged but kept: beyond max_share),
    and `read`, the label's examples before (Flags.details["read_per_label"])."""
    import pandas as pd

    columns = ["removed_label_issue", "removed_outlier", "flagged_kept"]
    table = pd.DataFrame(0, index=pd.Index(list(read), name="label"), columns=columns)
    for row in review:
        column = "flagged_kept" if not row["removed"] else \
            "removed_outlier" if "outlier" in row["reason"] else "removed_label_issue"
        for name in filter(None, row["given_labels"].split(", ")):
            table.loc[name, column] += 1
    table["read"] = list(read.values())
    return table.reset_index()
