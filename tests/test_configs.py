"""Every config the project ships composes and resolves."""

from __future__ import annotations

import itertools

import pytest
from conftest import CONF_DIR, compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emotion_lab import settings

PATHS = ("paths.output_dir=/tmp/emotion_lab_unused", "paths.sweep_group=null")


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def resolved(*overrides: str) -> dict:
    return OmegaConf.to_container(compose_config(*PATHS, *overrides), resolve=True)


def test_config_groups_are_found():
    assert "smoke" in names("experiment") and "fdr" in names("debug")
    assert set(names("backbone")) >= {"tiny", "minilm", "distilbert", "bertweet"}


@pytest.mark.parametrize("experiment", names("experiment"))
def test_experiment_composes_and_resolves(experiment):
    settings.check(compose_config(*PATHS, f"experiment={experiment}"))  # no false refusal
    config = resolved(f"experiment={experiment}")
    assert isinstance(config["model"]["optimizer"]["lr"], float)
    assert config["data"]["max_length"] == config["backbone"]["max_length"]


def test_minilm_lora_experiment_overrides_what_it_says():
    config = resolved("experiment=minilm_lora")
    assert config["backbone"]["name"] == "minilm" and config["adapter"]["name"] == "lora"
    assert (config["adapter"]["r"], config["adapter"]["alpha"]) == (16, 32)
    assert config["adapter"]["train_ffn"] is True
    assert config["model"]["adapter"] == config["adapter"]
    assert config["model"]["optimizer"]["lr"] == pytest.approx(1e-3)  # minilm's lora lr


@pytest.mark.parametrize("debug", names("debug"))
def test_debug_config_composes_and_resolves(debug):
    config = resolved(f"debug={debug}")
    assert config["trainer"]["accelerator"] == "cpu"
    assert not config.get("logger")  # debug configs run without a logger


def test_debug_fdr_sets_fast_dev_run():
    assert resolved("debug=fdr")["trainer"]["fast_dev_run"] is True
    overfit = resolved("debug=overfit")
    assert overfit["trainer"]["overfit_batches"] == 4
    assert overfit["callbacks"]["early_stopping"] is None


COMBINATIONS = list(itertools.product(names("backbone"), names("adapter"), names("threshold")))


@pytest.mark.parametrize(("backbone", "adapter", "threshold"), COMBINATIONS)
def test_every_combination_composes(backbone, adapter, threshold):
    cfg = compose_config(*PATHS, f"backbone={backbone}", f"adapter={adapter}",
                         f"threshold={threshold}")
    settings.check(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    lr = config["model"]["optimizer"]["lr"]
    assert isinstance(lr, float) and 0 < lr < 1
    assert lr == pytest.approx(float(config["backbone"]["lr"][adapter]))
    assert config["model"]["head"]["pooling"] == config["backbone"]["pooling"]
    # the small objects Hydra hands the module instantiate without touching a model
    strategy = instantiate(cfg.adapter)
    assert strategy.name == adapter
    if adapter == "lora":
        assert list(strategy.target_modules) == config["backbone"]["lora_target_modules"]
    policy = instantiate(cfg.threshold.policy)
    assert callable(policy) and cfg.threshold.name == threshold


def test_defaults_are_minilm_full_per_label():
    config = resolved()
    assert (config["backbone"]["name"], config["adapter"]["name"],
            config["threshold"]["name"]) == ("minilm", "full", "per_label")
    assert config["optimized_metric"] == "val/macro_f1"
    assert config["callbacks"]["model_checkpoint"]["monitor"] == "val/macro_f1"


@pytest.mark.parametrize("data", names("data"))
def test_data_config_instantiates_its_source(data):
    cfg = compose_config(*PATHS, f"data={data}")
    config = OmegaConf.to_container(cfg, resolve=True)
    assert config["data"]["clean"]["dedupe"] is False  # every rule off by default
    assert config["data"]["max_length"] > 0
    module = instantiate(cfg.data, tokenizer=None)
    assert hasattr(module.source, "load")  # no data is read until load()
    assert module.taxonomy == "original"


def test_prepare_config_uses_the_training_data_config():
    cfg = compose_config("data.dir=/some/where", config_name="prepare")
    assert cfg.out_dir == "data/processed"
    assert cfg.data.source.dir == "/some/where"  # the release directory reaches the source
    assert cfg.data.eval_taxonomies == ["ekman", "sentiment"]


def test_default_optimizer_is_fused_adamw():
    config = resolved()
    assert config["model"]["optimizer"]["_target_"] == "torch.optim.AdamW"
    assert config["model"]["optimizer"]["fused"] is True  # the CPU step is ~8x faster fused


@pytest.mark.parametrize("search", names("hparams_search"))
@pytest.mark.parametrize("end", ["low", "high"])
def test_every_search_space_corner_composes_and_passes_the_settings_check(search, end):
    """A trial's overrides (the study's fixed ones, then one value per parameter: each range's
    end, each list's first or last choice) compose with the train config and pass the
    settings check, so a misspelt key or a refused combination fails here, not in trial 0."""
    from emotion_lab.search import override

    spec = resolved(f"hparams_search={search}")["search"]
    picked = {key: (p["choices"][0 if end == "low" else -1] if p["type"] == "categorical"
                    else p[end]) for key, p in spec["params"].items()}
    config = compose_config(*PATHS, *spec["fixed"],
                            *(override(key, value) for key, value in picked.items()))
    settings.check(config)
    for key, value in picked.items():
        assert OmegaConf.select(config, key) == value
