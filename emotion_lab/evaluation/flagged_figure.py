"""The figure of cleaning by meaning: how many training examples were flagged per label,
what became of them, and the share of each label's examples removed (matplotlib, Agg: no
display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

COLOURS = {"removed_label_issue": ("#d62728", "removed: label issue"),
           "removed_outlier": ("#9467bd", "removed: outlier"),
           "flagged_kept": ("#f4b6b6", "flagged, kept (beyond max_share)")}


def plot_flagged_per_label(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Left: stacked bars of the flagged training examples carrying each (given) label, by
    what became of them; an example with two labels counts twice. Right: the share of each
    label's training examples removed (of `read`, before), where rare labels lose most.
    `table`: the columns of data.meaning.flagged_per_label; the most flagged label on top."""
    table = table.assign(flagged=table[list(COLOURS)].sum(axis=1))
    table = table.sort_values("flagged", ascending=True).reset_index(drop=True)
    removed = table["removed_label_issue"] + table["removed_outlier"]
    share = 100 * removed / table["read"].clip(lower=1)
    fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 1.5 + 0.3 * len(table)), sharey=True,
                                    gridspec_kw={"width_ratios": [2, 1]})
    left = pd.Series(0, index=table.index)
    for column, (colour, name) in COLOURS.items():
        if table[column].sum():
            ax.barh(table.index, table[column], left=left, color=colour, label=name)
            left = left + table[column]
    ax.set_yticks(table.index, table["label"])
    ax.set_xlabel("flagged training examples carrying the label")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    right.barh(table.index, share, color="#7f7f7f")
    right.set_xlabel("% of the label's examples removed")
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
