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

import numpy as np
import pandas as pd

from emotion_lab.evaluation.calibration import ece_per_label, reliability_bins
from emotion_lab.evaluation.comparison import (
    ComparisonError,
    Run,
    check_label_sets,
    feature_note,
    markdown_table,
    name_runs,
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
    plot_score_vs_params,
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


def write_report(paths: list[str | Path], out: str | Path | None = None,
                 wandb: bool = False, errors_per_label: int = 3) -> dict[str, Path]:
    """Find, check and compare the runs below `paths`; returns the files written."""
    paths = [Path(p) for p in paths]
    runs = [load_run(p) for p in find_runs(paths)]
    check_label_sets(runs)
    name_runs(runs)
    out = Path(out) if out else (paths[0] if len(paths) == 1
                                 else Path(os.path.commonpath([p.resolve() for p in paths])))
    figures = out / "report_figures"
    figures.mkdir(parents=True, exist_ok=True)
    table = summary_table(runs)
    table.to_csv(out / "report.csv", index=False)
    log.info("%d run(s): %s", len(runs), ", ".join(r.name for r in runs))

    plot_score_vs_params(table, figures / "macro_f1_vs_trainable_params.png", "test_macro_f1",
                         "Test macro-F1 against trainable parameters")
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
    md = ["# emotion_lab report", "",
          f"{len(runs)} run(s) below {', '.join(f'`{p}`' for p in paths)}. Thresholds and "
          "temperatures were fitted on validation by each run; the best run is chosen by "
          "validation macro-F1. ECE: test macro expected calibration error (15 bins), before "
          "and after temperature scaling.", "", markdown_table(shown), "", *feature_note(runs),
          "Run directories:", "", *[f"- {r.name}: `{r.path}`" for r in runs], "",
          "## Figures", "",
          "![F1 vs params](report_figures/macro_f1_vs_trainable_params.png)", "",
          "![PR-AUC](report_figures/per_label_pr_auc.png)", "",
          "![F1 vs frequency](report_figures/f1_vs_label_frequency.png)", "",
          "### Reliability on test", "",
          *[f"![{r.name}](report_figures/reliability_{i}.png)" for i, r in enumerate(runs)], "",
          errors_md, ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    written = {"report.md": out / "report.md", "report.csv": out / "report.csv",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emotion_lab.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="run or multirun directories")
    parser.add_argument("--out", help="where to write the report (default: next to the runs)")
    parser.add_argument("--wandb", action="store_true", help="log the table and figures to W&B")
    parser.add_argument("--errors-per-label", type=int, default=3,
                        help="confident mistakes listed per label and kind (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = write_report(args.paths, args.out, args.wandb, args.errors_per_label)
    except (ReportError, ComparisonError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(written["report.md"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
