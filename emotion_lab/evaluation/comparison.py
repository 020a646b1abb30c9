"""Runs side by side: short names from what differs, a check that their labels agree, and
the summary table the report writes (pure pandas over runs already read from disk)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emotion_lab.errors import ComparisonError
from emotion_lab.evaluation.uncertainty import Interval

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
    # the resolved training config (config.yaml; an evaluation variant's is its run's)
    config: dict[str, Any] = field(default_factory=dict)


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


# config keys that never make two runs different experiments: where outputs go, labels for
# dashboards, the console's progress bar, and every `seed` (the training seed and the ones
# interpolated from it)
IGNORED_KEYS = ("seed", "paths", "hydra", "tags", "task_name", "ckpt_path", "logger",
                "default_root_dir", "dirpath", "save_dir", "output_dir", "cache_dir",
                "progress_bar")


def _flat(config: dict[str, Any], prefix: str = "", out_dir: str | None = None
          ) -> dict[str, str]:
    """Dotted keys -> repr of values, without IGNORED_KEYS or values inside the run's own
    output directory (resolved configs repeat it in many places)."""
    if out_dir is None:
        out_dir = str((config.get("paths") or {}).get("output_dir") or "\0")
    flat: dict[str, str] = {}
    for key, value in config.items():
        if key in IGNORED_KEYS:
            continue
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.", out_dir)
        elif not (isinstance(value, str) and out_dir in value):
            flat[f"{prefix}{key}"] = repr(value)
    return flat


@dataclass
class SeedGroup:
    """Runs that differ by nothing but their seed (a group of one where no other seed ran)."""

    runs: list[Run]
    name: str = ""

    @property
    def seeds(self) -> list[Any]:
        return [r.config.get("seed") for r in self.runs]


def group_by_seed(runs: list[Run]) -> list[SeedGroup]:
    """Group runs whose configs are equal once every seed and output path is left out, and
    whose threshold policy and calibration (which evaluation variants change) agree. Runs
    without a saved config stay alone. Groups are named by what tells them apart."""
    keyed: list[tuple[dict[str, Any], Any, list[Run]]] = []
    for run in runs:
        # thresholds and calibration as evaluated (a variant re-fits them), not as trained
        policy = (run.metrics.get("threshold_policy"), run.metrics.get("calibration"),
                  "evaluated_from" in run.metrics)
        trained = {k: v for k, v in _flat(run.config).items()
                   if not k.startswith(("threshold.", "calibration.", "model.threshold_policy"))}
        if not run.config:
            keyed.append(({}, run.path, [run]))
            continue
        # a key one config lacks is not a difference: runs made before a setting existed
        # (e.g. backbone.dtype, threads) ran as its default did
        # ...but a group holds one run per seed: a second run of a seed it has is another
        # experiment, even if it differs only in a key the group's runs lack (a run with
        # model.loss.name=asymmetric beside runs made before model.loss.name existed); runs
        # with seed=null drew theirs at random, so they may repeat one config
        seed = run.config.get("seed")
        for config, key, members in keyed:
            if key == policy and members[0].config and (seed is None or seed not in [
                    m.config.get("seed") for m in members]) and all(
                    config[k] == v for k, v in trained.items() if k in config):
                config.update(trained)
                members.append(run)
                break
        else:
            keyed.append((dict(trained), policy, [run]))
    groups = [SeedGroup(members) for _, _, members in keyed]
    _name_groups(groups)
    return groups


def _name_groups(groups: list[SeedGroup]) -> None:
    firsts = [g.runs[0] for g in groups]
    varying = [f for f in NAME_FIELDS if len({str(r.metrics.get(f)) for r in firsts}) > 1]
    for group in groups:
        group.name = " ".join(str(group.runs[0].metrics.get(f)) for f in varying)
    flats = [_flat(r.config) for r in firsts]
    names = [g.name for g in groups]
    for group, flat in zip(groups, flats, strict=True):
        if names.count(group.name) > 1 or not group.name:
            # only what tells this group from the others of its name: what sets it apart from
            # a group named otherwise is in the name already
            peers = [f for f, name in zip(flats, names, strict=True) if name == group.name]
            # a key older runs lack still tells apart the peers that have it
            keys = sorted({k for f in peers for k in f})
            differing = [k for k in keys if len({f[k] for f in peers if k in f}) > 1
                         and _names_a_setting(k)]
            extra = " ".join(f"{_label(k)}={flat.get(k, '-')}".replace("'", "")
                             for k in differing if k.split(".")[-1] not in NAME_FIELDS)
            group.name = f"{group.name} {extra}".strip() or "all runs"
    names = [g.name for g in groups]
    for group in groups:
        if names.count(group.name) > 1 and "evaluated_from" in group.runs[0].metrics:
            group.name += " (re-evaluated)"
    names = [g.name for g in groups]
    for group in groups:  # tables and intervals are keyed by name: never two alike
        if names.count(group.name) > 1:
            group.name += f" ({group.runs[0].path})"


def _label(key: str) -> str:
    # `name` alone says nothing (model.loss.name, adapter.name): keep its parent
    parts = key.split(".")
    return ".".join(parts[-2:]) if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def _names_a_setting(key: str) -> bool:
    # model.adapter / model.backbone repeat adapter.* / backbone.* (interpolated); a _target_
    # names the class, which the adapter's or backbone's name already says
    return not key.startswith(("model.adapter.", "model.backbone.", "model.head.pooling",
                               "data.source.", "model.threshold_policy")) \
        and not key.endswith("._target_")


# columns of summary_table a seed group reports as mean and standard deviation
GROUP_METRICS = ("val_macro_f1", "test_macro_f1", "test_micro_f1", "test_macro_f1_at_0.3",
                 "test_macro_f1_at_0.5", "test_macro_pr_auc", "test_ece_after",
                 "train_seconds", "train_samples_per_second")


def group_table(groups: list[SeedGroup], table: pd.DataFrame,
                intervals: dict[tuple[str, str], Interval] | None = None) -> pd.DataFrame:
    """One row per seed group: mean and sample standard deviation of each GROUP_METRICS
    column over its runs (sd is NaN for a group of one), the trainable parameters, and the
    bootstrap interval of the group's mean test metrics where `intervals` has them (keyed
    by (group name, metric))."""
    by_dir = table.set_index("dir")
    rows = []
    for group in groups:
        members = by_dir.loc[[str(r.path) for r in group.runs]]
        row: dict[str, Any] = {"group": group.name, "runs": len(group.runs),
                               "seeds": ",".join(str(s) for s in group.seeds),
                               "params_trainable": members["params_trainable"].iloc[0],
                               "trainable_share": members["trainable_share"].iloc[0]}
        for col in GROUP_METRICS:
            values = pd.to_numeric(members[col], errors="coerce")
            row[f"{col}_mean"] = values.mean()
            row[f"{col}_sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
        for metric in ("macro_f1", "macro_pr_auc"):
            found = (intervals or {}).get((group.name, metric))
            row[f"test_{metric}_low"] = found.low if found else np.nan
            row[f"test_{metric}_high"] = found.high if found else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def mean_sd(mean: float, sd: float, digits: int = 4) -> str:
    if mean is None or np.isnan(mean):
        return "-"
    if sd is None or np.isnan(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def group_markdown(groups: pd.DataFrame) -> str:
    """The seed-group table as the report shows it: mean ± sd, intervals in brackets."""
    shown = pd.DataFrame({"group": groups["group"], "seeds": groups["seeds"]})
    for col, title in (("val_macro_f1", "val macro-F1"), ("test_macro_f1", "test macro-F1")):
        shown[title] = [mean_sd(m, s) for m, s in zip(groups[f"{col}_mean"],
                                                        groups[f"{col}_sd"], strict=True)]
    shown["95% CI (test)"] = [f"[{lo:.4f}, {hi:.4f}]" if not np.isnan(lo) else "-" for lo, hi
                              in zip(groups["test_macro_f1_low"], groups["test_macro_f1_high"],
                                     strict=True)]
    for col, title in (("test_macro_f1_at_0.3", "@0.3"), ("test_macro_f1_at_0.5", "@0.5"),
                       ("test_micro_f1", "micro-F1"), ("test_macro_pr_auc", "PR-AUC"),
                       ("test_ece_after", "ECE")):
        shown[title] = [mean_sd(m, s) for m, s in zip(groups[f"{col}_mean"],
                                                        groups[f"{col}_sd"], strict=True)]
    shown["PR-AUC 95% CI"] = [f"[{lo:.4f}, {hi:.4f}]" if not np.isnan(lo) else "-" for lo, hi
                              in zip(groups["test_macro_pr_auc_low"],
                                     groups["test_macro_pr_auc_high"], strict=True)]
    shown["trainable"] = [f"{p:,.0f} ({s:.2%})" for p, s in zip(
        groups["params_trainable"], groups["trainable_share"], strict=True)]
    shown["train s"] = [mean_sd(m, s, 0) for m, s in zip(
        groups["train_seconds_mean"], groups["train_seconds_sd"], strict=True)]
    return markdown_table(shown)


def pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (no higher score at no higher cost),
    cheapest first."""
    order = np.lexsort((-score, cost))
    front, best = [], -np.inf
    for i in order:
        if score[i] > best:
            front.append(int(i))
            best = score[i]
    return np.array(front, dtype=int)
