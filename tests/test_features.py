"""Frozen-head feature cache: computed once, reused, and equal to running the backbone."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emotion_lab.data.batching import FeatureSplit, TokenizedSplit
from emotion_lab.data.datamodule import TextDataModule
from emotion_lab.inference import predict_probs
from emotion_lab.models.feature_cache import cache_key, encode
from emotion_lab.models.saving import load_model
from emotion_lab.rundir import load_arrays
from emotion_lab.train import train

MEAN = ("adapter=frozen_head", "model.head.pooling=mean", "trainer.max_epochs=2")


@pytest.fixture(scope="module")
def cached_runs(goemotions_dir, tmp_path_factory):
    from conftest import compose_train_cfg

    root = tmp_path_factory.mktemp("features")
    first = train(compose_train_cfg(goemotions_dir, root / "first", *MEAN))
    second = train(compose_train_cfg(goemotions_dir, root / "second", *MEAN))
    return root, first, second


def test_features_are_cached_once_and_reused(cached_runs):
    root, (first, _), (second, _) = cached_runs
    assert len(list((root / "cache" / "features").glob("*.pt"))) == 3  # train, val, test
    assert first["time/feature_seconds"] > 0 and second["time/feature_seconds"] is not None
    assert first["test/macro_f1"] == pytest.approx(second["test/macro_f1"])  # same features
    assert first["params/trainable"] == second["params/trainable"]
    np.testing.assert_allclose(np.load(root / "first" / "test_probs.npy"),
                               np.load(root / "second" / "test_probs.npy"), atol=1e-6)


def test_saved_model_predicts_what_the_features_predicted(cached_runs):
    """The head trained on cached features, put back on the backbone, gives the run's
    test probabilities: the cache holds what the backbone computes."""
    root, (_, objects), _ = cached_runs
    model, tokenizer, _ = load_model(root / "first" / "model")
    texts = objects["datamodule"].splits["test"].texts
    probs, _ = load_arrays(root / "first", "test")
    np.testing.assert_allclose(predict_probs(model, tokenizer, texts, max_length=64), probs,
                               atol=1e-5)


def test_head_only_batches(cached_runs):
    _, (_, objects), _ = cached_runs
    batch = next(iter(objects["datamodule"].train_dataloader()))
    assert set(batch) == {"features", "labels", "index"}
    assert batch["features"].shape == (16, 32)  # batch 16, tiny hidden size 32


def test_cache_key_follows_tokens_pooling_and_weights(tmp_path):
    split = TokenizedSplit([[101, 7, 102], [101, 8, 9, 102]], np.zeros((2, 3), np.float32), 0)
    other = TokenizedSplit([[101, 7, 102], [101, 8, 102]], np.zeros((2, 3), np.float32), 0)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    backbone = {"model": str(folder), "local_package": None, "random_init": None}
    key = cache_key(backbone, "mean", split)
    assert key == cache_key(backbone, "mean", split)
    assert key != cache_key(backbone, "mean", other)
    assert key != cache_key(backbone, "cls", split)
    (folder / "model.safetensors").write_bytes(b"y" * 11)
    assert key != cache_key(backbone, "mean", split)


def test_encode_matches_pooling_in_eval_mode(cached_runs):
    _, (_, objects), _ = cached_runs
    model = objects["model"].model
    split = objects["datamodule"].tokenized["val"]
    features = encode(model, split, batch_size=7)
    model.eval()
    with torch.inference_mode():
        batch = split.collate([0, 1, 2])
        direct = model.pool(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(features[:3], direct, atol=1e-5, rtol=1e-4)
    assert len(FeatureSplit(features, split.labels)) == len(split)


def test_feature_batch_size_sets_head_batches(goemotions_dir, tmp_path, caplog):
    from conftest import compose_train_cfg

    with caplog.at_level(logging.INFO, logger="emotion_lab.train"):
        _, objects = train(compose_train_cfg(goemotions_dir, tmp_path / "run", *MEAN,
                                             "adapter.feature_batch_size=64"))
    batch = next(iter(objects["datamodule"].train_dataloader()))
    assert batch["features"].shape[0] == 64
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training:")]
    assert len(said) == 1 and "in batches of 64," in said[0], said  # the head's, not data's


FEATURES = torch.randn(50, 4)


def feature_datamodule(state: dict[str, int] | None = None) -> TextDataModule:
    """A datamodule serving 50 cached features (batches of 8, evaluation 16, seed 3), as
    use_cached_features leaves it; `state`: a checkpoint's, as Lightning restores it."""
    datamodule = TextDataModule(tokenizer=None, batch_size=8, eval_batch_size=16, seed=3)
    labels = torch.zeros(50, 3)
    datamodule.tokenized = {name: SimpleNamespace(labels=labels) for name in ("train", "val")}
    datamodule.use_features({name: FEATURES for name in ("train", "val")})
    if state is not None:
        datamodule.load_state_dict(state)
    return datamodule


def epoch_batches(datamodule: TextDataModule, epoch: int) -> list[list[int]]:
    loader = datamodule.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(epoch)  # as Lightning does each epoch
    return [b["index"].tolist() for b in loader]


def test_feature_batches_follow_the_epoch_and_resume_mid_epoch():
    """Training batches on features come from the datamodule's own LengthGroupedBatches:
    drawn from the seed and the epoch (not from a generator re-seeded at each start), and a
    run resumed from the datamodule's state skips the batches its checkpoint had trained,
    as for tokens. Evaluation keeps the split's order."""
    never_stopped = epoch_batches(feature_datamodule(), 1)
    assert len(never_stopped) == 7 and sorted(sum(never_stopped, [])) == list(range(50))
    assert never_stopped != epoch_batches(feature_datamodule(), 0)  # each epoch its own order
    # what a checkpoint after 3 batches of epoch 1 holds
    stopped = feature_datamodule()
    epoch_batches(stopped, 1)
    progress = SimpleNamespace(current=SimpleNamespace(processed=3))
    stopped.trainer = SimpleNamespace(fit_loop=SimpleNamespace(
        epoch_loop=SimpleNamespace(batch_progress=progress)))
    state = stopped.state_dict()
    assert state == {"epoch": 1, "batches": 3}
    assert epoch_batches(feature_datamodule(state), 1) == never_stopped[3:]
    assert epoch_batches(feature_datamodule(state), 2) == epoch_batches(feature_datamodule(), 2)
    evaluation = feature_datamodule().val_dataloader()
    assert [b["index"].tolist() for b in evaluation] == [list(range(i, min(i + 16, 50)))
                                                         for i in range(0, 50, 16)]
    assert torch.equal(next(iter(evaluation))["features"], FEATURES[:16])


def test_ddp_ranks_share_every_feature_batch(monkeypatch):
    """Under DDP each rank takes its share of each global training batch, as for tokens."""
    single = epoch_batches(feature_datamodule(), 1)
    ranks = []
    for rank in range(2):
        monkeypatch.setattr("emotion_lab.data.batching.world_and_rank", lambda r=rank: (2, r))
        ranks.append(epoch_batches(feature_datamodule(), 1))
    assert [sorted(a + b) for a, b in zip(*ranks, strict=True)] == [sorted(b) for b in single]
