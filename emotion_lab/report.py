"""Compare runs side by side: one table row per run, figures, and an error analysis of the
best run (best by validation macro-F1; test never chooses).

    python -m emotion_lab.report runs=outputs/train/multiruns/2026-11-22_08-00-00
    python -m emotion_lab.report runs=outputs/runA,outputs/runB out=reports/a_vs_b wandb=true

Writes report.md, report.csv, report_errors.csv and report_figures/*.png into `out`
(default: the given directory, or the common parent of several). The tables and the
markdown are built in emotion_lab/evaluation/ (tables.py, report_text.py); this face finds
the runs, draws the figures and writes the files.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from emotion_lab.cli import parse_key_values, run_face
from emotion_lab.errors import ReportError
from emotion_lab.evaluation.calibration import ece_per_label, reliability_bins
from emotion_lab.evaluation.comparison import (
    ComparisonError,
    Run,
    check_label_sets,
    group_by_seed,
    group_table,
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
from emotion_lab.evaluation.report_text import error_markdown, report_markdown
from emotion_lab.evaluation.tables import uncertainty
from emotion_lab.evaluation.uncertainty import (
    Bootstrap,
    RunScores,
)
from emotion_lab.rundir import RunDirError, find_runs, load_arrays, load_run, read_json
from emotion_lab.settings import Choice, Float, Int

log = logging.getLogger(__name__)


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
    return error_markdown(run, pairs, errors, per_label), errors


def test_scores(run: Run) -> RunScores:
    probs, labels = load_arrays(run.path, "test")
    thresholds = list(read_json(run.path / "thresholds.json").values())
    return RunScores.of(probs, labels, None if thresholds[0] is None else np.array(thresholds))


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
        scores = {r.path: test_scores(r) for r in runs}
        groups_df, differences, notes = uncertainty(runs, groups, table, scores, bootstrap)
    else:
        groups_df, differences = group_table(groups, table), pd.DataFrame()
        notes = ["No intervals: the report ran with bootstrap_resamples=0."]
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

    md = report_markdown(runs, paths, table, groups, groups_df, differences, notes, errors_md)
    (out / "report.md").write_text(md, encoding="utf-8")
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
        raise ReportError("wandb=true needs the wandb package: pip install wandb") from e
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


DEFAULTS = {"runs": None, "out": None, "wandb": False, "errors_per_label": 3,
            "bootstrap_resamples": 1000, "bootstrap_seed": 0, "confidence": 0.95,
            "bootstrap_method": "percentile"}
METHODS = ("percentile", "basic", "BCa")
RULES = {"errors_per_label": Int(0), "bootstrap_resamples": Int(0),
         "confidence": Float(0, 1, open=True), "bootstrap_method": Choice(*METHODS)}


def run(argv: list[str]) -> dict[str, Path]:
    """runs=<dir>[,<dir>...] (run or multirun directories) and the settings in DEFAULTS:
    out (default: next to the runs), wandb (log the table and figures to W&B),
    errors_per_label (confident mistakes listed per label and kind), bootstrap_resamples
    (0: no intervals), bootstrap_seed, confidence, bootstrap_method (scipy.stats.bootstrap's:
    percentile, basic, or BCa, which adds one statistic per test example)."""
    args = parse_key_values(argv, DEFAULTS, required=("runs",), rules=RULES)
    written = write_report([p for p in args["runs"].split(",") if p], args["out"],
                           args["wandb"], args["errors_per_label"],
                           Bootstrap(args["bootstrap_resamples"], args["bootstrap_seed"],
                                     args["confidence"], args["bootstrap_method"]))
    print(written["report.md"])
    return written


def main(argv: list[str] | None = None) -> int:
    return run_face(run, argv)


if __name__ == "__main__":
    sys.exit(main())
