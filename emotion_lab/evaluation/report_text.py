"""The report's markdown: the comparison table with its intervals, the seed groups, the
paired differences, the figures and the error analysis of the best run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emotion_lab.evaluation.comparison import (
    Run,
    SeedGroup,
    feature_note,
    group_markdown,
    markdown_table,
)


def error_markdown(run: Run, pairs: pd.DataFrame, errors: pd.DataFrame, per_label: int) -> str:
    """The best run's error analysis: confused label pairs and confident mistakes."""
    shown = errors.copy()
    shown["text"] = shown["text"].map(lambda t: "(texts not saved with this run)" if t is None
                                      else t if len(t) <= 200 else t[:197] + "...")
    text = ["## Error analysis of the best run", "",
            f"Best run by validation macro-F1: **{run.name}** (`{run.path}`).", "",
            "![heatmap](report_figures/heatmap_best_run.png)", "",
            "### Label pairs most often confused (predicted one, true the other)", "",
            markdown_table(pairs), "",
            f"### Most confident mistakes, {per_label} per label and kind", "",
            "False positives: highest probability without the label. False negatives: lowest "
            "probability with it.", "", markdown_table(shown.drop(columns="index"))]
    return "\n".join(text)


def report_markdown(runs: list[Run], paths: list[Path], table: pd.DataFrame,
                    groups: list[SeedGroup], groups_df: pd.DataFrame,
                    differences: pd.DataFrame, notes: list[str], errors_md: str) -> str:
    """report.md: everything the report found, with its figures linked."""
    shown = table.drop(columns=["dir", "backbone"] if table["backbone"].nunique() == 1
                       else ["dir"])
    for metric in ("macro_f1", "macro_pr_auc"):
        if f"test_{metric}_low" in shown:
            shown.insert(shown.columns.get_loc(f"test_{metric}") + 1, f"{metric} 95% CI",
                         [f"[{lo:.4f}, {hi:.4f}]" for lo, hi in
                          zip(shown.pop(f"test_{metric}_low"), shown.pop(f"test_{metric}_high"),
                              strict=True)])
    several = any(len(g.runs) > 1 for g in groups)
    seeds_md = ["## Seed groups", "",
                "Runs that differ only by their seed, as mean ± sample sd over seeds "
                "(a group of one shows its run).", "", group_markdown(groups_df), ""] \
        if several else []
    diff_md = ["## Paired differences against the best group", "",
               f"Each group's mean test score minus that of **{differences['against'].iloc[0]}**"
               " (best by validation macro-F1), both scored on the same bootstrap resamples "
               "of the test set: an interval that excludes 0 is a difference this test set "
               "can tell apart. It covers the draw of test examples, not of seeds: a "
               "difference within the larger seed sd (last column) may still be the seeds'.",
               "", markdown_table(differences), ""] \
        if len(differences) else []
    md = ["# emotion_lab report", "",
          f"{len(runs)} run(s) below {', '.join(f'`{p}`' for p in paths)}. Thresholds and "
          "temperatures were fitted on validation by each run; the best run is chosen by "
          "validation macro-F1. ECE: test macro expected calibration error (15 bins), before "
          "and after temperature scaling.", "", markdown_table(shown), "", *notes, "",
          *feature_note(runs), *seeds_md, *diff_md,
          "Run directories:", "", *[f"- {r.name}: `{r.path}`" for r in runs], "",
          "## Figures", "",
          "![F1 vs params](report_figures/macro_f1_vs_trainable_params.png)", "",
          "![F1 vs time](report_figures/macro_f1_vs_train_time.png)", "",
          "![PR-AUC](report_figures/per_label_pr_auc.png)", "",
          "![F1 vs frequency](report_figures/f1_vs_label_frequency.png)", "",
          "### Reliability on test", "",
          *[f"![{r.name}](report_figures/reliability_{i}.png)" for i, r in enumerate(runs)], "",
          errors_md, ""]
    return "\n".join(md)
