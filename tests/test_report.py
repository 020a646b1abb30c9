"""The comparison report over real (tiny) runs, its error analysis, and its refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import compose_train_cfg

from emotion_lab.evaluation.error_analysis import (
    confident_errors,
    confused_pairs,
    predictions,
    true_vs_predicted,
)
from emotion_lab.evaluation.uncertainty import Bootstrap
from emotion_lab.report import main, write_report
from emotion_lab.train import train

NAMES = ["a", "b", "c"]


def test_predictions_and_label_matrix():
    probs = np.array([[0.9, 0.6, 0.1], [0.2, 0.8, 0.7]])
    labels = np.array([[1, 0, 0], [0, 1, 0]])
    preds = predictions(probs, np.array([0.5, 0.7, 0.5]))
    np.testing.assert_array_equal(preds, [[1, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(predictions(probs, None), [[1, 0, 0], [0, 1, 0]])
    matrix = true_vs_predicted(labels, preds)
    # row b: its one example was predicted b and c; label c has no examples
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 1], [0, 0, 0]])


def test_confused_pairs_count_said_a_where_b_was_meant():
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    preds = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 1, 0]])
    pairs = confused_pairs(labels, preds, NAMES)
    top = pairs.iloc[0]
    assert (top["predicted"], top["true"], top["examples"]) == ("b", "a", 2)
    assert top["share_of_true"] == pytest.approx(2 / 3)
    assert set(zip(pairs["predicted"], pairs["true"], strict=True)) == {
        ("b", "a"), ("c", "a"), ("a", "b")}  # example 4 is right: no pair


def test_confident_errors_are_the_surest_mistakes():
    probs = np.array([[0.95, 0.1], [0.6, 0.2], [0.05, 0.9], [0.3, 0.8]])
    labels = np.array([[0, 0], [0, 1], [1, 1], [1, 1]])
    preds = (probs >= 0.5).astype(int)
    errors = confident_errors(probs, labels, preds, ["x", "y"], ["t0", "t1", "t2", "t3"], 1)
    x_fp = errors[(errors["label"] == "x") & (errors["kind"] == "false positive")].iloc[0]
    x_fn = errors[(errors["label"] == "x") & (errors["kind"] == "false negative")].iloc[0]
    assert (x_fp["text"], x_fp["probability"]) == ("t0", 0.95)  # not t1 (0.6)
    assert (x_fn["text"], x_fn["true"]) == ("t2", "x, y")  # 0.05, surer than t3's 0.3
    assert len(errors) == 3  # y has a false negative (t1) and no false positive


@pytest.fixture(scope="module")
def runs(goemotions_dir, tmp_path_factory):
    """A two-job 'multirun': full fine-tuning with a global temperature, and LoRA without."""
    root = tmp_path_factory.mktemp("multirun")
    for job, overrides in enumerate([("adapter=full", "calibration=global"),
                                     ("adapter=lora", "model.optimizer.lr=1e-3")]):
        train(compose_train_cfg(goemotions_dir, root / str(job), *overrides))
    return root


def test_report_over_a_multirun(runs, tmp_path):
    out = tmp_path / "report"
    written = write_report([runs], out)
    table = pd.read_csv(out / "report.csv")
    assert list(table["run"]) == ["full global", "lora none"]  # what differs names them
    for _, row in table.iterrows():
        metrics = json.loads((runs / row["dir"].split("/")[-1] / "metrics.json").read_text())
        assert row["test_macro_f1"] == pytest.approx(metrics["test/macro_f1"])
        assert row["params_trainable"] == metrics["params/trainable"]
    full, lora = table.iloc[0], table.iloc[1]
    assert full["test_ece_before"] == pytest.approx(
        json.loads((runs / "0" / "metrics.json").read_text())["test/macro_ece_uncalibrated"])
    assert not np.isnan(full["test_ece_after"]) and np.isnan(lora["test_ece_after"])
    figures = {p.name for p in (out / "report_figures").glob("*.png")}
    assert figures == {"macro_f1_vs_trainable_params.png", "macro_f1_vs_train_time.png",
                       "per_label_pr_auc.png",
                       "f1_vs_label_frequency.png", "heatmap_best_run.png",
                       "reliability_0.png", "reliability_1.png"}
    assert all(p.stat().st_size > 10_000 for p in written.values() if p.suffix == ".png")
    md = (out / "report.md").read_text(encoding="utf-8")
    best = table.loc[table["val_macro_f1"].idxmax(), "run"]
    assert f"Best run by validation macro-F1: **{best}**" in md
    assert all(f"report_figures/{name}" in md for name in figures)
    errors = pd.read_csv(out / "report_errors.csv")
    test_texts = json.loads((runs / "0" / "test_texts.json").read_text(encoding="utf-8"))
    assert len(errors) > 0 and set(errors["text"]) <= set(test_texts)


def test_report_intervals_hold_each_run_s_score(runs, tmp_path):
    out = tmp_path / "report"
    write_report([runs], out, bootstrap=Bootstrap(n_resamples=200, seed=3))
    table = pd.read_csv(out / "report.csv")
    low, high = table["test_macro_f1_low"], table["test_macro_f1_high"]
    assert ((low <= table["test_macro_f1"]) & (table["test_macro_f1"] <= high)
            & (high - low > 0)).all()
    # average precision's bootstrap leans upwards on a test set this small (a resample
    # that draws no positive of a label leaves it out), so only a proper interval is asked
    low, high = table["test_macro_pr_auc_low"], table["test_macro_pr_auc_high"]
    assert ((low >= 0) & (low < high) & (high <= 1)).all()
    differences = pd.read_csv(out / "report_differences.csv")
    best = table.loc[table["val_macro_f1"].idxmax(), "run"]
    other = next(r for r in table["run"] if r != best)
    f1 = differences[differences["metric"] == "test macro_f1"].iloc[0]
    assert (f1["group"], f1["against"]) == (other, best)
    by_run = table.set_index("run")["test_macro_f1"]
    assert f1["difference"] == pytest.approx(by_run[other] - by_run[best])
    assert f1["low"] <= f1["difference"] <= f1["high"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Paired differences against the best group" in md and "200 resamples" in md
    # the same seed gives the same intervals; no resamples, no intervals
    write_report([runs], tmp_path / "again", bootstrap=Bootstrap(n_resamples=200, seed=3))
    assert pd.read_csv(tmp_path / "again" / "report.csv").equals(table)
    write_report([runs], tmp_path / "none", bootstrap=Bootstrap(n_resamples=0))
    assert "test_macro_f1_low" not in pd.read_csv(tmp_path / "none" / "report.csv")


def test_report_groups_runs_that_differ_only_by_seed(goemotions_dir, tmp_path):
    root = tmp_path / "multirun"
    jobs = [("adapter=full", "seed=1"), ("adapter=full", "seed=2"), ("adapter=lora", "seed=1")]
    for job, overrides in enumerate(jobs):
        train(compose_train_cfg(goemotions_dir, root / str(job), *overrides))
    write_report([root], tmp_path / "report", bootstrap=Bootstrap(n_resamples=100))
    groups = pd.read_csv(tmp_path / "report" / "report_groups.csv").set_index("group")
    assert list(groups.index) == ["full", "lora"] and list(groups["seeds"]) == ["1,2", "1"]
    table = pd.read_csv(tmp_path / "report" / "report.csv")
    full = table[table["adapter"] == "full"]["test_macro_f1"]
    assert groups.loc["full", "test_macro_f1_mean"] == pytest.approx(full.mean())
    assert groups.loc["full", "test_macro_f1_sd"] == pytest.approx(full.std(ddof=1))
    assert np.isnan(groups.loc["lora", "test_macro_f1_sd"])
    assert groups.loc["full", "test_macro_f1_low"] <= full.mean() <= groups.loc[
        "full", "test_macro_f1_high"]
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Seed groups" in md and "full (2 seeds)" not in md  # names in figures only
    assert f"{full.mean():.4f} ± {full.std(ddof=1):.4f}" in md


def test_report_cli_writes_next_to_the_runs(runs, capsys):
    assert main([f"runs={runs / '1'}"]) == 0
    assert (runs / "1" / "report.md").is_file()
    assert capsys.readouterr().out.strip().endswith("report.md")


def test_report_logs_table_and_figures_to_wandb(runs, tmp_path, wandb_offline):
    import wandb

    write_report([runs], tmp_path / "report", wandb=True)
    assert wandb.run is None  # the run it started is finished
    offline = list((tmp_path / "report" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    media = offline[0] / "files" / "media"
    assert len(list((media / "images" / "report").glob("*.png"))) == 7
    table = json.loads(next((media / "table" / "report").glob("runs*.table.json")).read_text())
    assert len(table["data"]) == 2 and "test_macro_f1" in table["columns"]


def test_report_refuses_what_it_cannot_compare(runs, tmp_path, capsys):
    assert main([f"runs={tmp_path}"]) == 2  # no runs
    assert "no runs found below" in capsys.readouterr().err

    other = tmp_path / "ekman"
    shutil.copytree(runs / "1", other)
    (other / "label_map.json").write_text(json.dumps({"0": "joy", "1": "anger"}))
    assert main([f"runs={runs},{other}"]) == 2
    err = capsys.readouterr().err
    assert "different label sets" in err and str(other) in err and str(runs / "0") in err

    (other / "label_map.json").unlink()
    assert main([f"runs={other}"]) == 2
    assert "label_map.json: missing" in capsys.readouterr().err
    assert main([f"runs={tmp_path / 'nowhere'}"]) == 2
    assert "no such directory" in capsys.readouterr().err
