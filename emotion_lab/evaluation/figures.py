"""Figures written next to data and runs (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}


def plot_label_frequencies(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Horizontal bars of each label's share per split, most frequent label on top.

    `table` has a `label` column and `<split>_share` columns. The share axis is logarithmic:
    GoEmotions spans 0.2% (grief) to 33% (neutral), and rare labels vanish on a linear one.
    """
    table = table.sort_values("train_share", ascending=True).reset_index(drop=True)
    splits = [s for s in SPLIT_COLOURS if f"{s}_share" in table]
    height = 0.8 / len(splits)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.3 * len(table)))
    for k, split in enumerate(splits):
        ax.barh(table.index - (k - (len(splits) - 1) / 2) * height,  # train on top
                100 * table[f"{split}_share"], height=height, label=split,
                color=SPLIT_COLOURS[split])
    ax.set_yticks(table.index, table["label"])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    # label the 2s and 5s between decades: enough to read a bar, not so many they collide
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}%" if f"{v:g}"[0] in "25"
                                               else ""))
    ax.set_xlabel("share of examples carrying the label (log scale)")
    ax.set_title(title)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(curves: dict[str, dict], path: str | Path, title: str) -> None:
    """Reliability diagram: observed positive rate against mean predicted probability per
    bin, one line per curve (e.g. before / after temperature scaling), the diagonal as the
    ideal, and the pairs per bin (log scale) below, since most pairs sit near 0."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 7), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    for name, bins in curves.items():
        filled = bins["count"] > 0
        ax.plot(bins["confidence"][filled], bins["observed"][filled], marker="o", label=name)
        hist.stairs(np.maximum(bins["count"], 0.5), bins["edges"], label=name)  # log: no 0
    ax.set_ylabel("observed positive rate")
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    hist.set_yscale("log")
    hist.set_xlabel("predicted probability (bin mean)")
    hist.set_ylabel("(example, label) pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save(fig, path: str | Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def place_labels(ax, points: list[tuple[float, float]], texts: list[str],
                 fontsize: int = 7) -> None:
    """Write each text next to its point, trying offsets around it until the text overlaps
    no text placed before (greedy; the last candidate is kept when all collide)."""
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    offsets = [(4, 3), (4, -9), (-4, 3), (-4, -9), (4, 10), (4, -16), (-4, 10), (-4, -16)]
    for (x, y), text in sorted(zip(points, texts, strict=True), key=lambda p: -p[0][1]):
        for dx, dy in offsets:
            note = ax.annotate(text, (x, y), fontsize=fontsize, textcoords="offset points",
                               xytext=(dx, dy), ha="left" if dx > 0 else "right")
            box = note.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            note.remove()
        else:
            note = ax.annotate(text, (x, y), fontsize=fontsize, textcoords="offset points",
                               xytext=offsets[0])
            box = note.get_window_extent(renderer)
        placed.append(box)


def plot_score_vs_cost(groups: pd.DataFrame, path: str | Path, cost: str, metric: str,
                       xlabel: str, title: str, front: np.ndarray | None = None) -> None:
    """One labelled point per seed group: the mean of `metric` against the mean of `cost`
    (log scale), with bars of one standard deviation over seeds each way where a group has
    several, and the Pareto front (indices into `groups`, cheapest first) as a step line.

    `groups` has `group` and `{cost,metric}_mean` / `_sd` columns (comparison.group_table);
    a cost without `_mean` (trainable parameters) is the same for every seed."""
    x = groups[f"{cost}_mean"] if f"{cost}_mean" in groups else groups[cost]
    x_sd = groups.get(f"{cost}_sd")
    y, y_sd = groups[f"{metric}_mean"], groups[f"{metric}_sd"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if front is not None and len(front):
        fx, fy = x.iloc[front].to_numpy(), y.iloc[front].to_numpy()
        ax.step(fx, fy, where="post", color="grey", ls="--", lw=1, zorder=1,
                label="Pareto front (no group better and cheaper)")
        ax.scatter(fx, fy, s=140, facecolors="none", edgecolors="black", zorder=4)
    for i in range(len(groups)):
        ax.errorbar(x.iloc[i], y.iloc[i], yerr=None if np.isnan(y_sd.iloc[i]) else y_sd.iloc[i],
                    xerr=None if x_sd is None or np.isnan(x_sd.iloc[i]) else x_sd.iloc[i],
                    fmt="o", ms=7, capsize=3, zorder=3)
        runs = groups["runs"].iloc[i] if "runs" in groups else 1
        label = groups["group"].iloc[i] + (f" ({runs} seeds)" if runs > 1 else "")
        ax.annotate(label, (x.iloc[i], y.iloc[i]), fontsize=8, textcoords="offset points",
                    xytext=(6, 8 if i % 2 == 0 else -14))
    ax.set_xscale("log")
    low, high = (y - y_sd.fillna(0)).min(), (y + y_sd.fillna(0)).max()
    pad = max(0.02, 0.15 * (high - low))
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} (mean over seeds, bars: 1 sd)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if front is not None and len(front):
        ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_per_label_scores(scores: pd.DataFrame, counts: pd.Series, path: str | Path,
                          xlabel: str, title: str,
                          count_name: str = "training examples") -> None:
    """One row per label (most frequent in training on top, its count in the tick label),
    one marker series per run (the columns of `scores`, indexed by label)."""
    order = counts.sort_values().index
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.3 * len(order)))
    y = np.arange(len(order))
    for k, run in enumerate(scores.columns):
        ax.scatter(scores.loc[order, run], y, label=run, s=28, zorder=3,
                   marker="osD^v<>"[k % 7])
    ax.set_yticks(y, [f"{label} ({counts[label]:,})" for label in order])
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"label ({count_name}), most frequent on top")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_f1_vs_frequency(f1: pd.DataFrame, counts: pd.Series, path: str | Path,
                         title: str, name_run: str | None = None,
                         count_name: str = "training examples") -> None:
    """Per-label test F1 against the label's training count (log scale), one colour per run
    (columns of `f1`); label names are written for `name_run` only, to stay readable."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for k, run in enumerate(f1.columns):
        ax.scatter(counts[f1.index], f1[run], label=run, s=28, marker="osD^v<>"[k % 7])
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    if name_run is not None:
        place_labels(ax, [(counts[label], f1.loc[label, name_run]) for label in f1.index],
                     list(f1.index))
    ax.set_xlabel(f"{count_name} carrying the label (log scale)")
    ax.set_ylabel("test F1")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_label_heatmap(matrix: np.ndarray, label_names: list[str], path: str | Path,
                       title: str) -> None:
    """Rows: true label; columns: predicted label; colour: share of the row's examples."""
    n = len(label_names)
    size = max(6.0, 0.32 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n), label_names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), label_names, fontsize=8)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="share of the true label's examples predicted so")
    _save(fig, path)


def plot_word_importance(words: list[str], scores: list[float], path: str | Path,
                         title: str, xlabel: str) -> None:
    """Horizontal bars, one per word in text order (top to bottom); positive scores (the word
    raises the probability) in one colour, negative in another."""
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * max(len(words), 1)))
    y = np.arange(len(words))
    colours = ["#d62728" if s > 0 else "#1f77b4" for s in scores]
    ax.barh(y, scores, color=colours)
    ax.set_yticks(y, words)
    ax.invert_yaxis()
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(textwrap.fill(title, 70), fontsize=10)  # long texts: wrap, never cut off
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_confusion(run_dir: Path, evaluation: Any, label_names: list[str]) -> None:
    """confusion_test.png: true against predicted label on test (scores over thresholds),
    and confusion_test_generated.png for the labels a generative model wrote."""
    from emotion_lab.evaluation.error_analysis import predictions, true_vs_predicted

    arrays = evaluation.arrays
    made = {"confusion_test.png": predictions(arrays["test_probs"], evaluation.thresholds)}
    if "test_generated_preds" in arrays:
        made["confusion_test_generated.png"] = arrays["test_generated_preds"]
    for name, preds in made.items():
        what = "generated answers" if "generated" in name else "scores over thresholds"
        plot_label_heatmap(true_vs_predicted(arrays["test_labels"], preds), label_names,
                           run_dir / name, f"test: true vs predicted label ({what})")
