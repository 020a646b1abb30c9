"""The comparison tables with uncertainty: bootstrap intervals per run and per seed group,
and paired differences of every group against the best one (what the report shows)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emotion_lab.evaluation.comparison import Run, SeedGroup, group_table
from emotion_lab.evaluation.uncertainty import (
    Bootstrap,
    Interval,
    RunScores,
    check_same_test_set,
    group_interval,
    paired_difference,
)


def same_test_set(scores: list[RunScores]) -> bool:
    try:
        check_same_test_set([scores])
    except ValueError:
        return False
    return True


def uncertainty(runs: list[Run], groups: list[SeedGroup], table: pd.DataFrame,
                scores: dict[Path, RunScores],
                settings: Bootstrap) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Bootstrap intervals (per run into `table`, per group into the group table) and paired
    differences of every group against the best one by validation macro-F1. `scores`: each
    run's test arrays, by run path."""
    intervals: dict[tuple[str, str], Interval] = {}
    for metric in ("macro_f1", "macro_pr_auc"):
        per_run = {r.path: group_interval([scores[r.path]], metric, settings) for r in runs}
        table[f"test_{metric}_low"] = [per_run[r.path].low for r in runs]
        table[f"test_{metric}_high"] = [per_run[r.path].high for r in runs]
        for group in groups:
            intervals[(group.name, metric)] = per_run[group.runs[0].path] \
                if len(group.runs) == 1 else group_interval(
                    [scores[r.path] for r in group.runs], metric, settings)
    groups_df = group_table(groups, table, intervals)
    notes = [f"Intervals: {settings.confidence:.0%} bootstrap over test examples "
             f"(scipy.stats.bootstrap, {settings.method}, {settings.n_resamples:,} resamples, "
             f"seed {settings.seed}); a group's interval is that of its mean over seeds, every "
             "seed scored on the same resamples, so it leaves out the spread between seeds "
             "(the sd column shows that)."]
    rows = []
    best = groups[int(groups_df["val_macro_f1_mean"].to_numpy().argmax())]
    if not same_test_set(list(scores.values())):
        notes.append("Paired differences left out: the runs were not scored on the same test "
                     "examples.")
        return groups_df, pd.DataFrame(rows), notes
    for group in groups:
        if group is best:
            continue
        for metric in ("macro_f1", "macro_pr_auc"):
            diff = paired_difference([scores[r.path] for r in group.runs],
                                     [scores[r.path] for r in best.runs], metric, settings)
            sds = groups_df.set_index("group").loc[[group.name, best.name],
                                                   f"test_{metric}_sd"]
            rows.append({"group": group.name, "against": best.name, "metric": f"test {metric}",
                         "difference": diff.estimate, "low": diff.low, "high": diff.high,
                         "interval excludes 0": "yes" if diff.excludes_zero else "no",
                         "larger seed sd": sds.max()})
    return groups_df, pd.DataFrame(rows), notes
