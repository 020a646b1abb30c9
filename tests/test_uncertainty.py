"""Bootstrap intervals over test examples, paired differences, seed groups, Pareto fronts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emotion_lab.evaluation.comparison import Run, group_by_seed, pareto_front
from emotion_lab.evaluation.metrics import f1_scores, pr_auc_per_label
from emotion_lab.evaluation.uncertainty import (
    Bootstrap,
    RunScores,
    group_interval,
    paired_difference,
)


def scored(seed: int = 0, n: int = 400, labels: int = 5, skill: float = 1.0):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, labels)) < 0.2).astype(float)
    probs = 1 / (1 + np.exp(-(skill * (2 * truth - 1) + rng.normal(size=truth.shape))))
    return probs, truth


@pytest.mark.parametrize("thresholds", [np.full(5, 0.5), np.linspace(0.2, 0.7, 5)])
def test_weighted_scores_with_unit_weights_are_the_evaluation_s(thresholds):
    probs, truth = scored()
    scores = RunScores.of(probs, truth, thresholds)
    ones = np.ones(len(probs))
    assert scores.macro_f1(ones) == pytest.approx(f1_scores(probs, truth, thresholds)["macro_f1"])
    assert scores.macro_pr_auc(ones) == pytest.approx(np.nanmean(pr_auc_per_label(probs, truth)))


def test_weights_count_examples():
    probs, truth = scored()
    scores = RunScores.of(probs, truth, np.full(5, 0.5))
    weights = np.zeros(len(probs))
    weights[:200] = 1
    weights[10] = 3  # drawn three times: the same as three copies
    kept = np.r_[np.arange(200), [10, 10]]
    copy = RunScores.of(probs[kept], truth[kept], np.full(5, 0.5))
    assert scores.macro_f1(weights) == pytest.approx(copy.macro_f1(np.ones(len(kept))))
    # a drawn-twice example ties with itself: counted together, as average precision does
    assert scores.macro_pr_auc(weights) == pytest.approx(
        np.nanmean(pr_auc_per_label(probs[kept], truth[kept])))
    assert scores.macro_f1(2 * np.ones(len(probs))) == pytest.approx(
        scores.macro_f1(np.ones(len(probs))))


def test_intervals_are_seeded_and_shrink_with_more_examples():
    settings = Bootstrap(n_resamples=300, seed=7)
    small = RunScores.of(*scored(n=200), np.full(5, 0.5))
    large = RunScores.of(*scored(n=3200), np.full(5, 0.5))
    a, b = group_interval([small], "macro_f1", settings), group_interval([small], "macro_f1",
                                                                            settings)
    assert a == b and a.low < a.estimate < a.high
    wide = group_interval([large], "macro_f1", settings)
    assert (wide.high - wide.low) < 0.5 * (a.high - a.low)  # ~1/sqrt(16) of the width
    perfect = RunScores.of(scored()[1], scored()[1], np.full(5, 0.5))
    assert str(group_interval([perfect], "macro_f1", settings)) == "1.0000 [1.0000, 1.0000]"


def test_paired_difference_tells_a_better_model_from_a_copy():
    settings = Bootstrap(n_resamples=300)
    probs, truth = scored(skill=1.0)
    better = scored(skill=2.5)[0]  # same truth (same seed), cleaner probabilities
    weak, strong = (RunScores.of(p, truth, np.full(5, 0.5)) for p in (probs, better))
    same = paired_difference([weak], [weak], "macro_f1", settings)
    assert (same.estimate, same.low, same.high) == (0, 0, 0) and not same.excludes_zero
    gain = paired_difference([strong], [weak], "macro_f1", settings)
    assert gain.estimate > 0 and gain.excludes_zero
    # pairing: the difference is surer than the two intervals' overlap would suggest
    mean_of_two = paired_difference([strong, weak], [weak], "macro_f1", settings)
    assert mean_of_two.estimate == pytest.approx(gain.estimate / 2)
    other_truth = RunScores.of(probs, scored(seed=1)[1], np.full(5, 0.5))
    with pytest.raises(ValueError, match="different test sets"):
        paired_difference([weak], [other_truth], "macro_f1", settings)


def run(path: str, seed: int, lr: float = 1e-4, **metrics) -> Run:
    config = {"seed": seed, "paths": {"output_dir": f"/out/{path}"},
              "trainer": {"default_root_dir": f"/out/{path}"},
              "data": {"seed": seed, "source": {"seed": seed}},
              "callbacks": {"model_checkpoint": {"dirpath": f"/out/{path}/checkpoints"}},
              "model": {"optimizer": {"lr": lr}}, "adapter": {"name": "full"}}
    return Run(Path(path), {"adapter": "full", "threshold_policy": "per_label",
                            "calibration": "none", **metrics}, ["a"], pd.DataFrame(),
               pd.Series(dtype=int), config=config)


def test_runs_that_differ_only_by_seed_group_together():
    groups = group_by_seed([run("a", 1), run("b", 2), run("c", 3, lr=3e-4), run("d", 1, lr=3e-4),
                            run("e", 1, evaluated_from="a", threshold_policy="global")])
    assert [[r.path.name for r in g.runs] for g in groups] == [["a", "b"], ["c", "d"], ["e"]]
    assert [g.seeds for g in groups] == [[1, 2], [3, 1], [1]]
    # named by what differs: the threshold policy, then the learning rate
    assert [g.name for g in groups] == ["per_label lr=0.0001", "per_label lr=0.0003", "global"]


def test_groups_of_one_adapter_are_named_by_what_tells_them_apart():
    def adapter_run(path, seed, adapter, **settings):
        made = run(path, seed, adapter=adapter)
        made.config["adapter"] = {"_target_": f"emotion_lab.models.adapters.{adapter}",
                                  "name": adapter, **settings}
        return made

    groups = group_by_seed([adapter_run("f", 1, "full"),
                            adapter_run("a", 1, "lora", r=16, alpha=32),
                            adapter_run("b", 1, "lora", r=4, alpha=32)])
    # not the class nor the name, which only tell LoRA from full fine-tuning (said already);
    # r, which the full run lacks, does tell the two LoRA groups apart
    assert [g.name for g in groups] == ["full", "lora r=16", "lora r=4"]


def test_a_setting_older_runs_lack_still_names_the_newer_groups_and_names_stay_unique():
    older = run("a", 1)
    asl, decay = run("b", 1), run("c", 1)
    asl.config["model"] |= {"loss": {"name": "asymmetric"}, "layer_lr_decay": None}
    decay.config["model"] |= {"loss": {"name": "bce"}, "layer_lr_decay": 0.8}
    for made, rate in ((older, 0), (asl, 10), (decay, 10)):  # display only: no difference
        made.config["callbacks"]["progress_bar"] = {"refresh_rate": rate}
    groups = group_by_seed([older, asl, decay])
    # b is not merged into a's group though a lacks its keys: a group has one run per seed
    assert [g.name for g in groups] == ["layer_lr_decay=- loss.name=-",
                                        "layer_lr_decay=None loss.name=asymmetric",
                                        "layer_lr_decay=0.8 loss.name=bce"]
    unseeded = group_by_seed([run("u", None), run("v", None)])  # seed=null: replicates
    assert [len(g.runs) for g in unseeded] == [2]
    twins = group_by_seed([run("x", 1), run("y", 1, threshold_policy="global"),
                           run("z", 1, threshold_policy="global")])
    assert len({g.name for g in twins}) == 3  # y and z alike: told apart by their folders


def test_a_setting_older_runs_lack_does_not_split_a_seed_group():
    newer = run("b", 2)
    newer.config["backbone"] = {"dtype": "float32"}  # a key added after run a was made
    other = run("c", 3)
    other.config["backbone"] = {"dtype": "bfloat16"}
    groups = group_by_seed([run("a", 1), newer, other])
    assert [[r.path.name for r in g.runs] for g in groups] == [["a", "b"], ["c"]]


def test_pareto_front_keeps_runs_nothing_beats():
    cost = np.array([10.0, 1.0, 5.0, 20.0, 5.0])
    score = np.array([0.50, 0.30, 0.45, 0.49, 0.40])
    assert list(pareto_front(cost, score)) == [1, 2, 0]
