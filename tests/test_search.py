"""python -m emotion_lab.search: an Optuna study over the real hparams_search config with the
tiny backbone, stored in SQLite, resumed, its best trial written as an experiment config.
The fast tests replace train() with a stub whose metric is a function of the trial's values,
and a trial's config with its values alone: they check what the search stores and draws."""

from __future__ import annotations

import pytest
from conftest import compose_config
from omegaconf import OmegaConf

import emotion_lab.search as search_module
from emotion_lab.errors import ConfigError
from emotion_lab.search import SearchError, check, main, search


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


def stub_overrides(tmp_path, *extra: str) -> list[str]:
    return ["hparams_search=minilm_lora", "backbone=tiny", "paths.output_dir=/x",
            f"search.dir={tmp_path / 'search'}",
            f"search.storage=sqlite:///{tmp_path / 'study.db'}", *extra]


@pytest.fixture
def quick_trials(monkeypatch):
    """No training: train() is fake_train (a test may replace it), and a trial's config holds
    its values and paths only (composing one takes ~0.5 s)."""
    compose = search_module.compose_train

    def quick(overrides):
        if not any(o.startswith("paths.sweep_group=") for o in overrides):
            return compose(overrides)
        return OmegaConf.from_dotlist([o for o in overrides if o.startswith(
            ("model.", "trainer.", "adapter.", "paths."))])

    monkeypatch.setattr(search_module, "compose_train", quick)
    monkeypatch.setattr(search_module, "train", fake_train)


def fake_train(cfg, callbacks=()):
    """No training: the metric is a function of the trial's values."""
    return {"val/macro_f1": cfg.model.optimizer.lr * cfg.adapter.r}, {}


def stored(tmp_path) -> list:
    import optuna

    return optuna.load_study(study_name="minilm_lora",
                             storage=f"sqlite:///{tmp_path / 'study.db'}").trials


def drawn(trials) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in trials]


def test_a_resumed_search_draws_new_trials_the_ones_an_uninterrupted_search_draws(
        tmp_path, quick_trials):
    search(stub_overrides(tmp_path / "a", "search.n_trials=2"))
    search(stub_overrides(tmp_path / "a", "search.n_trials=2"))  # resumed: 2 more
    resumed = stored(tmp_path / "a")
    assert [t.number for t in resumed] == list(range(4))
    assert len(set(drawn(resumed))) == 4  # before: trials 2-3 replayed trials 0-1
    # still reproducible: the same 4 trials as one search of 4
    search(stub_overrides(tmp_path / "b", "search.n_trials=4"))
    assert drawn(stored(tmp_path / "b")) == drawn(resumed)


def test_two_workers_on_one_study_never_propose_the_same_trial(tmp_path, monkeypatch,
                                                               quick_trials):
    calls = []

    def worker_a_train(cfg, callbacks=()):
        calls.append(cfg.paths.output_dir)
        if len(calls) == 1:  # while worker A trains its first trial, worker B starts
            search(stub_overrides(tmp_path, "search.n_trials=2"))
        return fake_train(cfg)

    monkeypatch.setattr(search_module, "train", worker_a_train)
    search(stub_overrides(tmp_path, "search.n_trials=2"))
    trials = stored(tmp_path)
    assert [c.rsplit("_", 1)[1] for c in calls] == ["0", "1", "2", "3"]  # A, B, B, A
    assert len(set(drawn(trials))) == 4


@pytest.mark.parametrize("on_error", ["continue", "stop"])
def test_a_failing_trial_is_stored_fail_with_its_message_then_the_search_goes_on_or_stops(
        tmp_path, monkeypatch, quick_trials, on_error):
    import optuna

    calls = []

    def first_fails(cfg, callbacks=()):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory at batch 3")
        return fake_train(cfg)

    monkeypatch.setattr(search_module, "train", first_fails)
    overrides = stub_overrides(tmp_path, "search.n_trials=3", f"search.on_error={on_error}")
    if on_error == "continue":
        assert search(overrides)["trials"] == 3
    else:
        with pytest.raises(RuntimeError, match="out of memory"):
            search(overrides)
    trials = stored(tmp_path)
    FAIL, COMPLETE = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE
    assert [t.state for t in trials] == ([FAIL, COMPLETE, COMPLETE] if on_error == "continue"
                                         else [FAIL])
    assert trials[0].user_attrs["fail_reason"] == "RuntimeError: CUDA out of memory at batch 3"


@pytest.mark.parametrize("error", [ConfigError("model.loss.name=foo: use bce or focal"),
                                   KeyboardInterrupt()], ids=["setting", "interrupt"])
def test_a_setting_error_or_an_interrupt_stops_the_search_its_trial_stored_fail(
        tmp_path, monkeypatch, capsys, quick_trials, error):
    import optuna

    def raises(cfg, callbacks=()):
        raise error

    monkeypatch.setattr(search_module, "train", raises)
    overrides = stub_overrides(tmp_path, "search.n_trials=3", "search.on_error=continue")
    if isinstance(error, ConfigError):  # every trial would fail alike: one line, exit 2
        assert main(overrides) == 2
        assert capsys.readouterr().err == "error: model.loss.name=foo: use bce or focal\n"
    else:
        with pytest.raises(KeyboardInterrupt):
            search(overrides)
    (trial,) = stored(tmp_path)
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == (
        "ConfigError: model.loss.name=foo: use bce or focal"
        if isinstance(error, ConfigError) else "KeyboardInterrupt")


def test_a_bad_on_error_is_refused_before_any_trial_is_stored(tmp_path, quick_trials):
    with pytest.raises(SearchError, match=r"search.on_error='retry': use stop or continue"):
        search(stub_overrides(tmp_path, "search.on_error=retry"))
    assert not (tmp_path / "study.db").exists()


GOOD = {"n_trials": 2, "direction": "maximize", "on_error": "stop", "seed": 0,
        "params": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
                   "r": {"type": "categorical", "choices": [4, 8]}}}


@pytest.mark.parametrize(("change", "message"), [
    ({"n_trials": 0}, "search.n_trials=0: .* an integer >= 1"),
    ({"n_trials": "ten"}, "search.n_trials='ten'"),
    ({"direction": "up"}, "search.direction='up': use maximize or minimize"),
    ({"on_error": None}, "search.on_error=None: use stop or continue"),
    ({"seed": -1}, "search.seed=-1"),
    ({"params": {"lr": {"type": "float", "low": 1e-3, "high": 1e-5}}},
     "search.params.lr=.*low < high"),
    ({"params": {"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}},
     "search.params.lr.low=0.0: a log scale needs low > 0"),
    ({"params": {"r": {"type": "categorical", "choices": []}}},
     "search.params.r.choices=\\[\\]: give at least one choice"),
    ({"params": {"r": {"type": "bool"}}}, "search.params.r.type='bool'"),
    ({"params": {"r": 8}}, "search.params.r=8: a distribution"),
])
def test_each_bad_search_setting_is_refused_in_one_line_naming_its_key(change, message):
    check(GOOD)
    with pytest.raises(SearchError, match=message) as refused:
        check({**GOOD, **change})
    assert "\n" not in str(refused.value)
