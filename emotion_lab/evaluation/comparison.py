"""Runs side by side: short names from what differs, a check that their labels agree, and
the summary table the report writes (pure pandas over runs already read from disk)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# report.csv column -> metrics.json key
COLUMNS = {
    "backbone": "backbone", "adapter": "adapter", "threshold_policy": "threshold_policy",
    "calibration": "calibration", "params_trainable": "params/trainable",
    "params_total": "params/total", "trainable_share": "params/trainable_share",
    "train_seconds": None, "train_samples_per_second": "time/train_samples_per_second",
    "val_macro_f1": "val/macro_f1", "val_micro_f1": "val/micro_f1",
    "test_macro_f1": "test/macro_f1", "test_micro_f1": "test/micro_f1",
    "test_macro_f1_at_0.3": "test/macro_f1_at_0.3", "test_macro_f1_at_0.5": "test/macro_f1_at_0.5",
    "test_macro_pr_auc": "test/macro_pr_auc",
}
# fields that tell runs apart in their names, in this order
NAME_FIELDS = ("backbone", "adapter", "threshold_policy", "calibration", "taxonomy")


class ComparisonError(ValueError):
    """Runs that cannot be compared; the message says which and why."""


@dataclass
class Run:
    """A finished run as the comparison sees it (read from disk by rundir.load_run)."""

    path: Path
    metrics: dict[str, Any]
    labels: list[str]
    per_label: pd.DataFrame
    train_counts: pd.Series
    count_name: str = "training examples"
    name: str = ""


def name_runs(runs: list[Run]) -> None:
    """Short names from the fields that differ between runs; the directory if still equal."""
    varying = [f for f in NAME_FIELDS if len({str(r.metrics.get(f)) for r in runs}) > 1]
    for run in runs:
        run.name = " ".join(str(run.metrics.get(f)) for f in varying or ["adapter"])
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({run.path.name})"


def check_label_sets(runs: list[Run]) -> None:
    groups: dict[tuple[str, ...], list[str]] = {}
    for run in runs:
        groups.setdefault(tuple(run.labels), []).append(str(run.path))
    if len(groups) > 1:
        described = "\n".join(f"  {len(labels)} labels ({', '.join(labels[:4])}, ...): "
                              f"{', '.join(paths)}" for labels, paths in groups.items())
        raise ComparisonError(f"runs with different label sets cannot share a report:\n"
                              f"{described}\nReport each label set separately (pass only its "
                              f"runs).")


def summary_table(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        m = run.metrics
        # frozen_head's feature pass runs outside fit(): count it as training compute
        seconds = (m.get("time/fit_seconds") or 0) + (m.get("time/feature_seconds") or 0)
        row = {"run": run.name, **{c: m.get(k) if k else seconds for c, k in COLUMNS.items()}}
        calibrated = m.get("test/macro_ece_uncalibrated") is not None
        row["test_ece_before"] = m["test/macro_ece_uncalibrated"] if calibrated else m.get(
            "test/macro_ece")
        row["test_ece_after"] = m.get("test/macro_ece") if calibrated else None
        row["dir"] = str(run.path)
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:,.0f}"
        if isinstance(v, (int, np.integer)):
            return f"{v:,}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.astype(object).itertuples(index=False)]
    return "\n".join(lines)


def feature_note(runs: list[Run]) -> list[str]:
    cached = [r for r in runs if r.metrics.get("time/feature_seconds") is not None]
    if not cached:
        return []
    return [f"{', '.join(r.name for r in cached)}: the head trains on cached backbone "
            "features, so train_samples_per_second counts head steps only; train_seconds "
            "includes the feature pass (" + ", ".join(
                f"{r.metrics['time/feature_seconds']:.0f} s" for r in cached) + ").", ""]
