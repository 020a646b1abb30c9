"""python -m emotion_lab.search: an Optuna study over the real hparams_search config with the
tiny backbone, stored in SQLite, resumed, its best trial written as an experiment config."""

from __future__ import annotations

import pytest
from conftest import compose_config

from emotion_lab.search import SearchError, main, search


def base_overrides(goemotions_dir, tmp_path, *extra: str) -> list[str]:
    return ["hparams_search=minilm_lora", "backbone=tiny", f"data.dir={goemotions_dir}",
            "logger=none", "trainer.accelerator=cpu", "callbacks.progress_bar=null",
            "data.batch_size=16", "++trainer.enable_model_summary=false",
            "data.max_train_examples=64", "data.max_eval_examples=40",
            f"search.dir={tmp_path / 'search'}",
            f"search.storage=sqlite:///{tmp_path / 'study.db'}", *extra]


@pytest.mark.slow
def test_a_search_runs_resumes_and_writes_its_best_trial_as_an_experiment(goemotions_dir,
                                                                         tmp_path):
    import optuna

    first = search(base_overrides(goemotions_dir, tmp_path, "search.n_trials=3"))
    assert first["trials"] == 3
    resumed = search(base_overrides(goemotions_dir, tmp_path, "search.n_trials=2"))
    assert resumed["trials"] == 5
    study = optuna.load_study(study_name="minilm_lora",
                              storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for t in finished:  # each trial its own run; the value is that run's val macro-F1
        metrics = (tmp_path / "search" / f"trial_{t.number}" / "metrics.json").read_text()
        assert f'"val/macro_f1": {t.value}' in metrics
    # per-epoch reports (what the pruner reads) for trials of several epochs
    several = [t for t in study.trials if t.params["trainer.max_epochs"] > 1]
    assert all(len(t.intermediate_values) >= 1 for t in several)
    assert resumed["best_value"] == max(t.value for t in finished)
    # the best trial, ready to run
    cfg = compose_config("experiment=minilm_lora_best", "backbone=tiny", "paths.output_dir=/x",
                         f"hydra.searchpath=[file://{tmp_path / 'search'}]")
    best = resumed["best_params"]
    assert cfg.adapter.name == "lora"
    assert cfg.model.optimizer.lr == pytest.approx(best["model.optimizer.lr"])
    assert cfg.adapter.r == best["adapter.r"] and cfg.trainer.max_epochs == \
        best["trainer.max_epochs"]


def test_a_search_on_the_test_split_or_without_a_config_is_refused(goemotions_dir, tmp_path):
    with pytest.raises(SearchError, match="never choose on the test split"):
        search(base_overrides(goemotions_dir, tmp_path, "search.metric=test/macro_f1"))
    assert main(["backbone=tiny", "paths.output_dir=/x"]) == 2
