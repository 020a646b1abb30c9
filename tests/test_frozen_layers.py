"""A frozen backbone that reads more than its last layer: pooled features of several hidden
states, mixed by learned weights (model.head.layers), max and mean+max pooling
(model.head.pooling), cached once, and reproduced by the saved run."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import EMOTIONS, compose_config, compose_train_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emotion_lab import settings
from emotion_lab.data.batching import TokenizedSplit
from emotion_lab.errors import ExportError
from emotion_lab.inference.predictor import EmotionClassifier
from emotion_lab.models.backbones import RANDOM_INIT_SEED, resolve_source
from emotion_lab.models.feature_cache import _weights_stamp, cache_key, cached_features, encode
from emotion_lab.models.heads import PooledClassifier, ScalarMix, build_classifier
from emotion_lab.models.kinds import kind_of
from emotion_lab.rundir import load_arrays, read_json, read_spec
from emotion_lab.train import train

MIXED = ("adapter=frozen_head", "model.head.layers=all", "model.head.pooling=mean_max",
         "model.head.hidden_size=16")
TEXTS = ["thanks, that is brilliant", "so sad and crying today", "ok"]


def build(*overrides: str) -> tuple[torch.nn.Module, dict]:
    """The tiny backbone's classifier (2 layers of 32: 3 hidden states), adapter applied."""
    cfg = compose_config("backbone=tiny", "paths.output_dir=/unused", "paths.sweep_group=null",
                         *overrides)
    config = OmegaConf.to_container(cfg, resolve=True)
    model, heads = build_classifier(config["backbone"], EMOTIONS, config["model"]["head"])
    return instantiate(cfg.adapter).apply(model, heads), config


def tokens(config: dict, texts: list[str] = TEXTS) -> TokenizedSplit:
    from emotion_lab.models.backbones import load_tokenizer

    tokenizer = load_tokenizer(config["backbone"])
    ids = tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    return TokenizedSplit(ids, np.zeros((len(ids), 0), np.float32), tokenizer.pad_token_id)


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, TokenizedSplit]:
    """The tiny backbone's encoder (eval mode) and TEXTS tokenised, built once."""
    model, config = build("adapter=frozen_head", "model.head.pooling=mean")
    return model.encoder.eval(), tokens(config)


def head(encoder: torch.nn.Module, pooling: str, layers: object = "last") -> PooledClassifier:
    return PooledClassifier(encoder, len(EMOTIONS), pooling, 0.0, layers=layers).eval()


@pytest.fixture(scope="module")
def mixed_run(goemotions_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("layers")
    metrics, objects = train(compose_train_cfg(goemotions_dir, root / "run", *MIXED))
    return root, metrics, objects


def test_mix_weights_start_uniform_and_train_with_the_head():
    model, _ = build("adapter=frozen_head", "model.head.layers=all")  # tiny pools cls: HF's
    assert isinstance(model, PooledClassifier) and model.layers == (0, 1, 2)
    mix = model.classifier[0]
    assert isinstance(mix, ScalarMix)
    torch.testing.assert_close(torch.softmax(mix.weights, 0), torch.full((3,), 1 / 3))
    assert mix.gamma.item() == 1.0
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"classifier.0.weights", "classifier.0.gamma"} <= trains
    assert all(n.startswith("classifier.") for n in trains)
    features = torch.randn(4, 3, 32)
    features[:, 2] += 3.0  # one layer carries more: its weight's gradient differs
    model.classifier(features).sum().backward()
    assert mix.weights.grad.abs().sum() > 0 and mix.gamma.grad is not None


def test_pooled_shapes(tiny):
    batch = tiny[1].collate([0, 1, 2])
    for pooling, width in [("mean", 32), ("max", 32), ("mean_max", 64)]:
        for layers, shape in [("last", ()), ("all", (3,)), ([0, -1], (2,))]:
            model = head(tiny[0], pooling, layers)
            with torch.inference_mode():
                pooled = model.pool(batch["input_ids"], batch["attention_mask"])
                logits = model(batch["input_ids"], batch["attention_mask"]).logits
            assert pooled.shape == (3, *shape, width), (pooling, layers)
            assert logits.shape == (3, len(EMOTIONS))


def test_max_pooling_reads_real_tokens_only_and_mean_max_is_both(tiny):
    encoder, split = tiny
    batch = split.collate([0, 1, 2])  # "ok" padded to the longest
    alone = split.collate([2])
    maxes = head(encoder, "max", "all")
    with torch.inference_mode():
        padded = maxes.pool(batch["input_ids"], batch["attention_mask"])[2]
        unpadded = maxes.pool(alone["input_ids"], alone["attention_mask"])[0]
        mean = head(encoder, "mean", "all").pool(batch["input_ids"], batch["attention_mask"])
        mean_max = head(encoder, "mean_max", "all").pool(batch["input_ids"],
                                                         batch["attention_mask"])
    assert batch["attention_mask"][2].sum() < batch["attention_mask"].shape[1]
    torch.testing.assert_close(padded, unpadded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mean_max[..., :32], mean)
    with torch.inference_mode():
        maxed = maxes.pool(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(mean_max[..., 32:], maxed)


def old_cache_key(backbone: dict, pooling: str, split: TokenizedSplit) -> str:
    """The key before model.head.layers existed (commit 840ad6d), verbatim."""
    source = resolve_source(backbone["model"], backbone.get("local_package"))
    digest = hashlib.sha256(json.dumps({
        "source": source, "weights": _weights_stamp(source), "pooling": pooling,
        "random_init": backbone.get("random_init"), "seed": RANDOM_INIT_SEED,
    }, sort_keys=True, default=str).encode())
    for ids in split.input_ids:
        digest.update(ids.numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:24]


def test_last_reads_todays_features_under_todays_key(tiny):
    model, config = build("adapter=frozen_head", "model.head.pooling=mean")
    everything = head(model.encoder, "mean", "all")
    split = tiny[1]
    assert model.layers is None and not isinstance(model.classifier[0], ScalarMix)
    features = encode(model, split, batch_size=2)
    model.eval()
    with torch.inference_mode():  # the old path: the last hidden state, mean over real tokens
        batch = split.collate([0, 1, 2])
        hidden = model.encoder(input_ids=batch["input_ids"],
                               attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        old = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    torch.testing.assert_close(features, old, atol=1e-6, rtol=1e-5)
    layered = encode(everything, split, batch_size=2)
    assert layered.shape == (3, 3, 32)
    torch.testing.assert_close(layered[:, -1], features, atol=1e-6, rtol=1e-5)
    backbone = config["backbone"]
    key = cache_key(backbone, "mean", split)
    assert key == old_cache_key(backbone, "mean", split) == cache_key(backbone, "mean", split,
                                                                      None)
    keys = {key, cache_key(backbone, "mean", split, (0, 1, 2)),
            cache_key(backbone, "mean", split, (2,)), cache_key(backbone, "max", split),
            cache_key(backbone, "mean_max", split), cache_key(backbone, "max", split, (0, 1, 2))}
    assert len(keys) == 6


def test_features_of_every_layer_are_cached_once_and_reused(mixed_run, monkeypatch):
    root, metrics, objects = mixed_run
    files = sorted((root / "cache" / "features").glob("*.pt"))
    assert len(files) == 3  # train, val, test
    datamodule, model = objects["datamodule"], objects["model"].model
    assert {tuple(torch.load(f).shape[1:]) for f in files} == {(3, 64)}  # 3 layers, mean+max
    assert next(iter(datamodule.train_dataloader()))["features"].shape == (16, 3, 64)
    assert metrics["time/feature_seconds"] > 0

    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone ran: the cache was not read")

    monkeypatch.setattr(model.encoder, "forward", no_backbone)
    backbone = OmegaConf.to_container(objects["cfg"].backbone, resolve=True)
    again = cached_features(model, datamodule.tokenized, backbone, root / "cache")
    assert set(again) == {"train", "val", "test"}
    torch.testing.assert_close(again["val"], datamodule.features["val"].features)


@pytest.mark.parametrize("pooling", ["mean", "max", "mean_max"])
@pytest.mark.parametrize("layers", ["last", "all", [0, 2]])
def test_every_state_cache_serves_each_pooling_and_layers_from_one_pass(tiny, tmp_path,
                                                                        pooling, layers):
    encoder, split = tiny
    _, config = build("adapter=frozen_head")
    tokenized = {"val": split}
    direct = encode(head(encoder, pooling, layers), split, batch_size=2)
    # the first head computes the mean and max of every state; the second only cuts
    first = head(encoder, "mean_max" if pooling != "mean_max" else "max", "all")
    cached_features(first, tokenized, config["backbone"], tmp_path, every_state=True)
    files = list((tmp_path / "features").glob("*.pt"))
    assert len(files) == 1 and torch.load(files[0]).shape == (3, 3, 64)
    asked = head(encoder, pooling, layers)
    forward = asked.encoder.forward
    asked.encoder.forward = lambda *a, **k: pytest.fail("the backbone ran again")
    try:
        cut = cached_features(asked, tokenized, config["backbone"], tmp_path, every_state=True)
    finally:
        asked.encoder.forward = forward
    torch.testing.assert_close(cut["val"], direct, atol=1e-6, rtol=1e-5)
    assert (asked.pooling, asked.layers) == (pooling, head(encoder, pooling, layers).layers)
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1  # nothing cached twice


def test_saved_run_reproduces_its_scores_and_learned_its_mix(mixed_run):
    root, _, _ = mixed_run
    run = root / "run"
    clf = EmotionClassifier.from_run(run, batch_size=7)
    probs, _ = load_arrays(run, "test")  # calibrated: the predictor applies temperatures
    np.testing.assert_allclose(clf.scores(read_json(run / "test_texts.json")), probs,
                               atol=1e-5)
    mix = clf.model.classifier[0]
    assert isinstance(mix, ScalarMix) and mix.weights.abs().max() > 0  # moved from uniform
    spec = read_spec(run / "model", ())
    assert spec["head"]["layers"] == "all" and spec["head"]["pooling"] == "mean_max"
    with pytest.raises(ExportError, match=r"model\.head\.layers=all"):
        kind_of("classifier").check_export("hf", spec)


def test_concat_weighs_each_layer_apart_and_its_run_reloads(goemotions_dir, tmp_path):
    scalar, _ = build("adapter=frozen_head", "model.head.layers=all")
    model, _ = build("adapter=frozen_head", "model.head.layers=all",
                     "model.head.layer_mix=concat", "model.head.hidden_size=16")
    first = model.classifier[2]  # flatten, dropout, then the hidden layer
    assert isinstance(first, torch.nn.Linear) and first.in_features == 3 * 32
    features = torch.randn(4, 3, 32)
    swapped = features[:, [1, 0, 2]]
    with torch.no_grad():  # a uniform mix cannot tell layers apart; concat can
        torch.testing.assert_close(scalar.eval().classifier(features),
                                   scalar.classifier(swapped))
        assert not torch.allclose(model.eval().classifier(features), model.classifier(swapped))
    run = tmp_path / "run"
    train(compose_train_cfg(goemotions_dir, run, *MIXED, "model.head.layer_mix=concat"))
    clf = EmotionClassifier.from_run(run, batch_size=7)
    probs, _ = load_arrays(run, "test")
    np.testing.assert_allclose(clf.scores(read_json(run / "test_texts.json")), probs,
                               atol=1e-5)
    assert read_spec(run / "model", ())["head"]["layer_mix"] == "concat"


def test_bad_layers_are_refused_by_name():
    assert any(p.startswith("model.head.layer_mix=sum") for p in settings.problems(
        compose_config("paths.output_dir=/x", "model.head.layer_mix=sum")))
    assert any(p.startswith("model.head.layer_mix=concat joins several") for p in
               settings.problems(compose_config("paths.output_dir=/x",
                                                "model.head.layer_mix=concat")))
    assert settings.problems(compose_config("paths.output_dir=/x", "model.head.layer_mix=concat",
                                            "model.head.layers=all")) == []
    assert any(p.startswith("model.head.layers=first") for p in settings.problems(
        compose_config("paths.output_dir=/x", "model.head.layers=first")))
    with pytest.raises(ValueError, match=r"model\.head\.layers=\[5\]"):
        build("adapter=frozen_head", "model.head.layers=[5]")
    with pytest.raises(ValueError, match="model.head.type=pooled"):
        build("adapter=frozen_head", "model.head.layers=all", "model.head.type=hf")


@pytest.mark.slow
def test_onnx_export_of_a_layer_mix_matches_pytorch(mixed_run, tmp_path):
    pytest.importorskip("onnxruntime", reason='pip install -e ".[export]"')
    from emotion_lab.export import ONNX_TOLERANCE, run

    root, _, _ = mixed_run
    report = run([f"run_dir={root / 'run'}", "format=onnx", f"out={tmp_path / 'onnx'}"])
    assert report["max_abs_diff_vs_pytorch"] <= ONNX_TOLERANCE


@pytest.mark.slow
def test_the_frozen_head_search_runs_on_cached_features(goemotions_dir, tmp_path):
    from emotion_lab.search import search

    found = search(["hparams_search=minilm_frozen_head", "backbone=tiny",
                    f"data.dir={goemotions_dir}", "logger=none", "trainer.accelerator=cpu",
                    "callbacks.progress_bar=null", "++trainer.enable_model_summary=false",
                    "data.max_train_examples=64", "data.max_eval_examples=40",
                    f"paths.cache_dir={tmp_path / 'cache'}", "search.n_trials=3",
                    f"search.dir={tmp_path / 'search'}",
                    f"search.storage=sqlite:///{tmp_path / 'study.db'}"])
    assert found["trials"] == 3
    assert set(found["best_params"]) == {"model.head.layers", "model.head.pooling",
                                         "model.head.hidden_size", "model.head.dropout",
                                         "model.optimizer.lr"}
    cfg = compose_config("experiment=minilm_frozen_head_best", "backbone=tiny",
                         "paths.output_dir=/x", f"hydra.searchpath=[file://{tmp_path / 'search'}]")
    assert cfg.adapter.name == "frozen_head"
    assert cfg.model.head.layers == found["best_params"]["model.head.layers"]
