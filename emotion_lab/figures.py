"""Figures written next to data and runs (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

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
