"""Compare runs side by side: one table row per run, figures, and an error analysis of the
best run (best by validation macro-F1; test never chooses).

    python -m emotion_lab.report outputs/train/multiruns/2026-11-22_08-00-00
    python -m emotion_lab.report outputs/runA outputs/runB --out reports/a_vs_b --wandb

Writes report.md, report.csv, report_errors.csv and report_figures/*.png into --out (default:
the given directory, or the common parent of several).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from emotion_lab.evaluation.calibration import ece_per_label, reliability_bins
from emotion_lab.evaluation.comparison import (
    ComparisonError,
    Run,
    SeedGroup,
    check_label_sets,
    feature_note,
    group_by_seed,
    group_markdown,
    group_table,
    markdown_table,
    name_runs,
    pareto_front,
    summary_table,
)
from emotion_lab.evaluation.error_analysis import (
    confident_errors,
    confused_pairs,
    predictions,
    true_vs_predicted,
)
from emotion_lab.evaluation.figures import (
    plot_f1_vs_frequency,
    plot_label_heatmap,
    plot_per_label_scores,
    plot_reliability,
    plot_score_vs_cost,
)
from emotion_lab.evaluation.uncertainty import (
    Bootstrap,
    Interval,
    RunScores,
    check_same_test_set,
    group_interval,
    paired_difference,
)
from emotion_lab.rundir import RunDirError, find_runs, load_arrays, load_run, read_json

log = logging.getLogger(__name__)


class ReportError(ValueError):
    """A report that cannot be written as asked; the message says what is missing."""

def macro_ece(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(ece_per_label(probs, labels).mean())


def reliability_figure(run: Run, path: Path) -> None:
    probs, labels = load_arrays(run.path, "test")
    raw = run.path / "test_probs_uncalibrated.npy"
    if raw.is_file():
        t = read_json(run.path / "temperatures.json")
        t_text = f"T={next(iter(t.values())):.2f}" if len(set(t.values())) == 1 else "per label"
        before = np.load(raw)
        curves = {f"before scaling (macro ECE {macro_ece(before, labels):.4f})":
                  reliability_bins(before, labels),
                  f"after scaling, {t_text} (macro ECE {macro_ece(probs, labels):.4f})":
                  reliability_bins(probs, labels)}
    else:
        curves = {f"no temperature scaling (macro ECE {macro_ece(probs, labels):.4f})":
                  reliability_bins(probs, labels)}
    plot_reliability(curves, path, f"{run.name}: reliability on test")


def error_analysis(run: Run, figures: Path, per_label: int) -> tuple[str, pd.DataFrame]:
    probs, labels = load_arrays(run.path, "test")
    thresholds = list(read_json(run.path / "thresholds.json").values())
    preds = predictions(probs, None if thresholds[0] is None else np.array(thresholds))
    texts_file = run.path / "test_texts.json"
    texts = read_json(texts_file) if texts_file.is_file() else None
    order = list(run.train_counts.sort_values(ascending=False).index)
    heat_order = [run.labels.index(label) for label in order]
    matrix = true_vs_predicted(labels, preds)[np.ix_(heat_order, heat_order)]
    plot_label_heatmap(matrix, order, figures / "heatmap_best_run.png",
                       f"{run.name}: share of each true label's test examples\n"
                       "predicted as each label")
    pairs = confused_pairs(labels, preds, run.labels)
    errors = confident_errors(probs, labels, preds, run.labels, texts, per_label)
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
    return "\n".join(text), errors


def test_scores(run: Run) -> RunScores:
    probs, labels = load_arrays(run.path, "test")
    thresholds = list(read_json(run.path / "thresholds.json").values())
    return RunScores.of(probs, labels, None if thresholds[0] is None else np.array(thresholds))


def same_test_set(scores: list[RunScores]) -> bool:
    try:
        check_same_test_set([scores])
    except ValueError:
        return False
    return True


def uncertainty(runs: list[Run], groups: list[SeedGroup], table: pd.DataFrame,
                settings: Bootstrap) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Bootstrap intervals (per run into `table`, per group into the group table) and paired
    differences of every group against the best one by validation macro-F1."""
    scores = {r.path: test_scores(r) for r in runs}
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


def write_report(paths: list[str | Path], out: str | Path | None = None,
                 wandb: bool = False, errors_per_label: int = 3,
                 bootstrap: Bootstrap | None = None) -> dict[str, Path]:
    """Find, check and compare the runs below `paths`; returns the files written.
    `bootstrap`: interval settings (default Bootstrap()); n_resamples=0 leaves intervals out.
    """
    bootstrap = bootstrap or Bootstrap()
    paths = [Path(p) for p in paths]
    runs = [load_run(p) for p in find_runs(paths)]
    check_label_sets(runs)
    name_runs(runs)
    out = Path(out) if out else (paths[0] if len(paths) == 1
                                 else Path(os.path.commonpath([p.resolve() for p in paths])))
    figures = out / "report_figures"
    figures.mkdir(parents=True, exist_ok=True)
    table = summary_table(runs)
    groups = group_by_seed(runs)
    log.info("%d run(s) in %d group(s): %s", len(runs), len(groups),
             ", ".join(g.name for g in groups))
    if bootstrap.n_resamples > 0:
        log.info("bootstrap intervals: %d resamples of the test set per run and group",
                 bootstrap.n_resamples)
        groups_df, differences, notes = uncertainty(runs, groups, table, bootstrap)
    else:
        groups_df, differences = group_table(groups, table), pd.DataFrame()
        notes = ["No intervals: the report ran with --bootstrap-resamples 0."]
    table.to_csv(out / "report.csv", index=False)
    groups_df.to_csv(out / "report_groups.csv", index=False)
    differences.to_csv(out / "report_differences.csv", index=False)

    for cost, name, xlabel in (
            ("params_trainable", "trainable_params", "trainable parameters (log scale)"),
            ("train_seconds", "train_time", "training time, s (log scale; fit + feature pass)")):
        usable = groups_df[groups_df[f"{cost}_mean" if cost == "train_seconds" else cost]
                           .notna()].reset_index(drop=True)
        x = usable[f"{cost}_mean" if cost == "train_seconds" else cost].to_numpy(float)
        plot_score_vs_cost(usable, figures / f"macro_f1_vs_{name}.png", cost, "test_macro_f1",
                           xlabel, f"Test macro-F1 against {xlabel.split(' (')[0]}",
                           pareto_front(x, usable["test_macro_f1_mean"].to_numpy(float)))
    counts = runs[0].train_counts
    split_scores = {col: pd.DataFrame({r.name: r.per_label[r.per_label["split"] == "test"]
                                       .set_index("label")[col] for r in runs})
                    .loc[runs[0].labels] for col in ("pr_auc", "f1")}
    plot_per_label_scores(split_scores["pr_auc"], counts, figures / "per_label_pr_auc.png",
                          "test PR-AUC (average precision)", "Per-label test PR-AUC by run",
                          runs[0].count_name)
    best = max(runs, key=lambda r: r.metrics.get("val/macro_f1", float("-inf")))
    plot_f1_vs_frequency(split_scores["f1"], counts, figures / "f1_vs_label_frequency.png",
                         "Per-label test F1 against training frequency "
                         f"(names: {best.name})", best.name, runs[0].count_name)
    for i, run in enumerate(runs):
        reliability_figure(run, figures / f"reliability_{i}.png")
    errors_md, errors = error_analysis(best, figures, errors_per_label)
    errors.to_csv(out / "report_errors.csv", index=False)

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
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    written = {"report.md": out / "report.md", "report.csv": out / "report.csv",
               "report_groups.csv": out / "report_groups.csv",
               "report_differences.csv": out / "report_differences.csv",
               "report_errors.csv": out / "report_errors.csv",
               **{p.name: p for p in sorted(figures.glob("*.png"))}}
    log_to_wandb(table, [p for p in written.values() if p.suffix == ".png"], wandb, out)
    log.info("wrote %s", out / "report.md")
    return written


def log_to_wandb(table: pd.DataFrame, figures: list[Path], force: bool, out: Path) -> None:
    """Log the table and figures to the active W&B run, or, when `force`, to a new one whose
    local files live in `out`, next to the report."""
    if not force and "wandb" not in sys.modules:
        return
    try:
        import wandb
    except ImportError as e:
        raise ReportError("--wandb needs the wandb package: pip install wandb") from e
    started = wandb.run is None and force
    run = wandb.init(project="emotion_lab", job_type="report", dir=out) if started else wandb.run
    if run is None:
        return
    run.log({"report/runs": wandb.Table(dataframe=table),
             **{f"report/{p.stem}": wandb.Image(str(p)) for p in figures}})
    if started:
        run.finish()


class SweepReport(Callback):
    """A Hydra callback (conf/hydra/default.yaml): when a multirun ends, write the report of
    all its finished jobs into the sweep directory, whichever launcher ran them. A sweep
    without a finished run (every job failed) logs why instead of failing the sweep."""

    def __init__(self, bootstrap_resamples: int = 1000) -> None:
        self.bootstrap_resamples = bootstrap_resamples

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            write_report([sweep_dir], out=sweep_dir,
                         bootstrap=Bootstrap(n_resamples=self.bootstrap_resamples))
        except (RunDirError, ReportError, ComparisonError) as e:
            log.warning("no sweep report for %s: %s", sweep_dir, e)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emotion_lab.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="run or multirun directories")
    parser.add_argument("--out", help="where to write the report (default: next to the runs)")
    parser.add_argument("--wandb", action="store_true", help="log the table and figures to W&B")
    parser.add_argument("--errors-per-label", type=int, default=3,
                        help="confident mistakes listed per label and kind (default 3)")
    parser.add_argument("--bootstrap-resamples", type=int, default=1000,
                        help="test-set resamples per interval (default 1000; 0: no intervals)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="resampling seed")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="interval confidence level (default 0.95)")
    parser.add_argument("--bootstrap-method", default="percentile",
                        choices=["percentile", "basic", "BCa"],
                        help="scipy.stats.bootstrap method (default percentile; BCa adds one "
                             "statistic per test example)")
    args = parser.parse_args(argv)
    if args.bootstrap_resamples < 0 or not 0 < args.confidence < 1:
        parser.error("--bootstrap-resamples must be >= 0 and --confidence within (0, 1)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = write_report(args.paths, args.out, args.wandb, args.errors_per_label,
                               Bootstrap(args.bootstrap_resamples, args.bootstrap_seed,
                                         args.confidence, args.bootstrap_method))
    except (ReportError, ComparisonError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(written["report.md"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
