"""train(cfg) end to end on the fixture with the tiny random backbone: the run directory it
writes, models that load back from it, learning, bad data, fast_dev_run, bf16 on CPU."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import EMOTIONS, SPLIT_SIZES, compose_train_cfg
from omegaconf import OmegaConf

from emotion_lab.data.goemotions import read_release_dir
from emotion_lab.data.types import DataError
from emotion_lab.errors import ConfigError
from emotion_lab.evaluation.metrics import evaluate, frequency_baseline
from emotion_lab.evaluation.thresholds import tune_per_label
from emotion_lab.inference import predict_probs
from emotion_lab.models.classifier_module import EmotionModule
from emotion_lab.models.heads import build_classifier
from emotion_lab.models.losses import pos_weight_from
from emotion_lab.models.precision import fast_precision
from emotion_lab.models.saving import load_model
from emotion_lab.rundir import REQUIRED, load_arrays
from emotion_lab.train import train

L = len(EMOTIONS)
N_TRAIN, N_VAL, N_TEST = SPLIT_SIZES["train.tsv"], SPLIT_SIZES["dev.tsv"], SPLIT_SIZES["test.tsv"]
H = 32  # conf/backbone/tiny.yaml hidden_size

# Adapter runs shared by the tests below; fp32 so that reloaded models must match tightly.
RUNS = {
    "full": ["adapter=full"],
    "lora": ["adapter=lora"],
    "frozen_head": ["adapter=frozen_head"],
    "full_mean": ["adapter=full", "model.head.pooling=mean"],
    "lora_mean": ["adapter=lora", "model.head.pooling=mean"],
}

SCORES = ("macro_f1", "micro_f1", "macro_precision", "macro_recall", "macro_pr_auc",
          "macro_f1_at_0.3", "macro_f1_at_0.5", "micro_f1_at_0.3", "micro_f1_at_0.5")


@pytest.fixture(scope="module", params=list(RUNS))
def run(request, goemotions_dir, tmp_path_factory):
    """(name, run_dir, returned metrics, objects) of one single-epoch training run."""
    run_dir = tmp_path_factory.mktemp(f"run_{request.param}")
    cfg = compose_train_cfg(goemotions_dir, run_dir, "trainer.precision=32-true",
                            *RUNS[request.param])
    metrics, objects = train(cfg)
    return request.param, run_dir, metrics, objects


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_run_writes_every_output(run):
    _, run_dir, _, _ = run
    for name in (*REQUIRED, "per_label.csv", "config.yaml", "val_probs.npy", "val_labels.npy",
                 "test_probs.npy", "test_labels.npy"):
        assert (run_dir / name).is_file(), name


def test_metrics_json(run):
    name, run_dir, metrics, _ = run
    written = read_json(run_dir / "metrics.json")
    assert written == json.loads(json.dumps(metrics))  # what train() returns is what it wrote
    for split in ("val", "test"):
        for score in SCORES:
            value = written[f"{split}/{score}"]
            assert isinstance(value, float) and 0.0 <= value <= 1.0, f"{split}/{score}"
    assert 0.0 <= written["test/macro_f1_frequency_baseline"] <= 1.0
    assert written["adapter"] == RUNS[name][0].split("=")[1]
    assert (written["backbone"], written["threshold_policy"]) == ("tiny", "per_label")
    assert written["time/train_samples_per_second"] > 0
    assert written["time/fit_seconds"] >= written["time/train_seconds"] > 0
    assert written["train/samples_seen"] == N_TRAIN  # one epoch
    assert (written["epochs"], written["global_steps"]) == (1, N_TRAIN // 16)
    assert written["best_checkpoint"].endswith("best.ckpt")


def test_parameter_counts(run):
    name, run_dir, metrics, objects = run
    trainable, total = metrics["params/trainable"], metrics["params/total"]
    head = H * L + L
    lora = 2 * 2 * 8 * (H + H)  # 2 layers x (query, value) x r (in + out)
    expected = {"full": total, "full_mean": total, "frozen_head": head,
                "lora": lora + head, "lora_mean": lora + head}
    assert trainable == expected[name]
    assert metrics["params/trainable_share"] == pytest.approx(trainable / total)
    grads = sum(p.numel() for p in objects["model"].parameters() if p.requires_grad)
    assert grads == trainable


def test_arrays_and_label_files(run, goemotions):
    _, run_dir, _, _ = run
    val_probs, val_labels = load_arrays(run_dir, "val")
    test_probs, test_labels = load_arrays(run_dir, "test")
    assert val_probs.shape == val_labels.shape == (N_VAL, L)
    assert test_probs.shape == test_labels.shape == (N_TEST, L)
    assert np.all((test_probs >= 0) & (test_probs <= 1))
    splits = read_release_dir(goemotions.dir).splits
    np.testing.assert_array_equal(test_labels, splits["test"].labels)  # original order
    np.testing.assert_array_equal(val_labels, splits["val"].labels)
    assert read_json(run_dir / "label_map.json") == {str(i): n for i, n in enumerate(EMOTIONS)}


def test_thresholds_are_fitted_on_validation_and_applied_to_test(run):
    _, run_dir, metrics, _ = run
    thresholds = read_json(run_dir / "thresholds.json")
    assert list(thresholds) == EMOTIONS
    values = np.array(list(thresholds.values()))
    val_probs, val_labels = load_arrays(run_dir, "val")
    np.testing.assert_allclose(values, tune_per_label(val_probs, val_labels))
    test_probs, test_labels = load_arrays(run_dir, "test")
    summary, _ = evaluate(test_probs, test_labels, values, EMOTIONS, "test")
    for key, value in summary.items():
        assert metrics[key] == pytest.approx(value), key


def test_per_label_csv(run):
    _, run_dir, metrics, _ = run
    with (run_dir / "per_label.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["split", "label", "support", "precision", "recall", "f1",
                             "pr_auc", "ece", "brier", "threshold"]
    # the 28 labels, then the grouped levels: Ekman 6 + neutral, sentiment 3 + neutral
    assert len(rows) == 2 * (L + 7 + 4)
    for split in ("val", "test"):
        mine = [r for r in rows if r["split"] == split]
        assert [r["label"] for r in mine] == EMOTIONS
        assert all(int(r["support"]) >= 2 for r in mine)  # every label occurs in the fixture
        assert np.mean([float(r["f1"]) for r in mine]) == pytest.approx(
            metrics[f"{split}/macro_f1"])
        ekman = [r for r in rows if r["split"] == f"{split}/ekman"]
        assert [r["label"] for r in ekman][-1] == "neutral" and len(ekman) == 7
        assert np.mean([float(r["f1"]) for r in ekman]) == pytest.approx(
            metrics[f"{split}/ekman/macro_f1"])
    thresholds = read_json(run_dir / "thresholds.json")
    assert all(float(r["threshold"]) == pytest.approx(thresholds[r["label"]])
               for r in rows if r["split"] in ("val", "test"))


def test_config_and_model_spec(run, goemotions_dir):
    name, run_dir, _, _ = run
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["backbone"]["name"] == "tiny"
    assert config["data"]["dir"] == str(goemotions_dir)
    assert config["paths"]["output_dir"] == str(run_dir)
    assert isinstance(config["model"]["optimizer"]["lr"], float)  # resolved, not `${...}`
    spec = read_json(run_dir / "model" / "emotion_lab.json")
    assert spec["adapter"] == config["adapter"]["name"]
    assert spec["labels"] == EMOTIONS
    assert spec["head"]["pooling"] == ("mean" if name.endswith("_mean") else "cls")
    if name.startswith("lora"):
        assert (run_dir / "model" / "adapter").is_dir()
        assert spec["backbone"]["random_init"]  # the base is rebuilt from its config
    else:
        assert (run_dir / "model" / "config.json").is_file()
        assert spec["backbone"]["model"] == "." and spec["backbone"]["random_init"] is None


def test_model_round_trip(run, goemotions):
    """load_model() + predict_probs() on the test texts reproduce test_probs.npy."""
    _, run_dir, _, _ = run
    model, tokenizer, spec = load_model(run_dir / "model")
    assert not model.training
    texts = [text for text, _, _ in goemotions.rows["test.tsv"]]
    probs = predict_probs(model, tokenizer, texts, max_length=spec["backbone"]["max_length"],
                          batch_size=7)
    np.testing.assert_allclose(probs, np.load(run_dir / "test_probs.npy"), atol=1e-5)


# ---------------------------------------------------------------- learning, precision


def test_full_fine_tuning_learns_the_fixture(make_cfg, goemotions):
    """Cue words decide the labels: a trained model ranks them far above chance and beats
    both the frequency baseline and predicting every label everywhere. The tiny random BERT
    learns the fixture with mean pooling at a constant lr (with [CLS] pooling it stays at the
    label priors for dozens of epochs)."""
    cfg = make_cfg("adapter=full", "model.head.pooling=mean", "model.optimizer.lr=3e-3",
                   "model.scheduler=null", "trainer.max_epochs=12",
                   "callbacks.early_stopping=null")
    metrics, _ = train(cfg)
    test_labels = np.load(cfg.paths.output_dir + "/test_labels.npy")
    prevalence = test_labels.mean(axis=0)
    all_positive_f1 = float(np.mean(2 * prevalence / (1 + prevalence)))
    baseline = metrics["test/macro_f1_frequency_baseline"]
    assert baseline == pytest.approx(frequency_baseline(
        read_release_dir(goemotions.dir).splits["train"].labels.mean(0), test_labels, seed=42))
    assert metrics["test/macro_f1"] > 2 * max(baseline, all_positive_f1)
    assert metrics["test/macro_pr_auc"] > 0.4  # chance is the prevalence, about 0.05


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_bf16_mixed_on_cpu(make_cfg, goemotions, adapter):
    """bf16 autocast trains on CPU (emulated where bf16 is not native: slow, but the model is
    tiny), and the run's arrays are still fp32 scores: the reloaded model reproduces them in
    fp32 on any machine, and bf16 inference stays within bf16 rounding of them."""
    cfg = make_cfg(f"adapter={adapter}", "trainer.precision=bf16-mixed")
    metrics, objects = train(cfg)
    assert objects["trainer"].precision == "bf16-mixed"
    assert (metrics["precision"], metrics["eval_precision"]) == ("bf16-mixed", "32-true")
    run_dir = objects["cfg"].paths.output_dir
    test_probs = np.load(run_dir + "/test_probs.npy")
    assert test_probs.dtype == np.float32 and np.isfinite(test_probs).all()
    assert 0.0 <= metrics["test/macro_f1"] <= 1.0
    model, tokenizer, _ = load_model(run_dir + "/model")
    texts = [t for t, _, _ in goemotions.rows["test.tsv"]]
    np.testing.assert_allclose(predict_probs(model, tokenizer, texts), test_probs, atol=1e-5)
    in_bf16 = predict_probs(model, tokenizer, texts, autocast=torch.bfloat16)
    np.testing.assert_allclose(in_bf16, test_probs, atol=2e-2)


@pytest.mark.parametrize(("precision", "clip"), [("bf16-mixed", 0.01), ("32-true", 0.01),
                                               ("bf16-mixed", 0)])
def test_fused_adamw_steps_with_clipped_gradients(make_cfg, monkeypatch, precision, clip):
    """The fused AdamW step stays under bf16-mixed (no grad scaler, so Lightning's refusal to
    clip for a fused optimizer does not apply), and the gradients it steps on are clipped to
    trainer.gradient_clip_val; without clipping they are larger, so the check can fail."""
    norms = []
    original = EmotionModule.configure_gradient_clipping

    def recording(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        original(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
        grads = [p.grad for g in optimizer.param_groups for p in g["params"]
                 if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))

    monkeypatch.setattr(EmotionModule, "configure_gradient_clipping", recording)
    _, objects = train(make_cfg(f"trainer.precision={precision}",
                                f"trainer.gradient_clip_val={clip}"))
    assert objects["model"].optimizers().optimizer.defaults["fused"] is True
    assert len(norms) == objects["trainer"].global_step > 0
    if clip:
        assert max(norms) <= clip * 1.001, norms
    else:
        assert min(norms) > 0.01, norms


def test_auto_precision_picks_what_the_cpu_runs_natively(make_cfg):
    cfg = make_cfg("debug=fdr", "trainer.precision=auto")
    _, objects = train(cfg)
    assert objects["trainer"].precision == fast_precision("cpu")
    assert objects["trainer"].precision in ("bf16-mixed", "32-true")


@pytest.mark.parametrize(("policy", "check"), [
    ("fixed", lambda t: np.allclose(t, 0.5)),
    ("global", lambda t: np.allclose(t, t[0])),
])
def test_threshold_policy_from_config(make_cfg, tmp_path, policy, check):
    metrics, _ = train(make_cfg(f"threshold={policy}", "debug=fdr"))
    assert metrics["threshold_policy"] == policy
    thresholds = np.array(list(read_json(tmp_path / "run" / "thresholds.json").values()))
    assert thresholds.shape == (L,) and check(thresholds)


def test_fixed_threshold_value_override(make_cfg, tmp_path):
    metrics, _ = train(make_cfg("threshold=fixed", "threshold.policy.value=0.3", "debug=fdr"))
    thresholds = read_json(tmp_path / "run" / "thresholds.json")
    assert set(thresholds.values()) == {0.3}
    assert metrics["test/macro_f1"] == pytest.approx(metrics["test/macro_f1_at_0.3"])


def test_csv_logger_gets_the_whole_config_and_per_label_metrics(make_cfg, tmp_path):
    cfg = make_cfg("logger=csv", "trainer.log_every_n_steps=5")
    train(cfg)
    hparams = yaml.safe_load((tmp_path / "run" / "csv" / "hparams.yaml").read_text())
    assert hparams == OmegaConf.to_container(cfg, resolve=True)
    with (tmp_path / "run" / "csv" / "metrics.csv").open(encoding="utf-8") as f:
        columns = next(csv.reader(f))
    for name in ("val/macro_f1", "test/macro_f1", "test/macro_pr_auc", "params/trainable",
                 "train/loss", *(f"test/f1/{label}" for label in EMOTIONS),
                 *(f"val/f1/{label}" for label in EMOTIONS)):
        assert name in columns, name


def test_resume_from_checkpoint(goemotions_dir, tmp_path):
    first, _ = train(compose_train_cfg(goemotions_dir, tmp_path / "first"))
    resumed, _ = train(compose_train_cfg(goemotions_dir, tmp_path / "second",
                                         f"ckpt_path={first['best_checkpoint']}",
                                         "trainer.max_epochs=2"))
    assert (first["global_steps"], resumed["global_steps"]) == (10, 20)
    assert resumed["epochs"] == 2
    assert resumed["train/samples_seen"] == 2 * N_TRAIN  # the clock counts on


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_pretrained_backbone_trains_in_train_mode(make_cfg, goemotions_dir, tmp_path, adapter):
    """transformers loads pretrained models in eval mode; dropout must be on while training."""
    import lightning as L
    from hydra.utils import instantiate

    from emotion_lab.models.backbones import load_tokenizer

    tiny = make_cfg()
    backbone = OmegaConf.to_container(tiny.backbone, resolve=True)
    model, _ = build_classifier(backbone, EMOTIONS, {"pooling": "cls", "dropout": 0.1})
    model.save_pretrained(tmp_path / "pretrained")
    load_tokenizer(backbone).save_pretrained(tmp_path / "pretrained")
    cfg = make_cfg(f"adapter={adapter}", f"backbone.model={tmp_path / 'pretrained'}",
                   "backbone.random_init=null", "backbone.local_package=null")
    module = instantiate(cfg.model, label_names=EMOTIONS, train_frequencies=None)

    modes = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes.append({m.training for m in pl_module.model.modules()})

    datamodule = instantiate(cfg.data, tokenizer=load_tokenizer(backbone))
    trainer = L.Trainer(accelerator="cpu", fast_dev_run=True, callbacks=[Probe()],
                        logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    assert modes == [{True}]


# ---------------------------------------------------------------- debug, errors


def test_debug_fdr_runs_one_batch_without_checkpoint(make_cfg, tmp_path):
    metrics, objects = train(make_cfg("debug=fdr"))
    assert objects["cfg"].trainer.fast_dev_run is True
    assert metrics["best_checkpoint"] is None
    assert metrics["global_steps"] == 1 and metrics["train/samples_seen"] == 16
    for name in REQUIRED:
        assert (tmp_path / "run" / name).is_file(), name
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_same_seed_same_run(make_cfg, tmp_path):
    first, _ = train(make_cfg("debug=fdr", output_dir=tmp_path / "a"))
    second, _ = train(make_cfg("debug=fdr", output_dir=tmp_path / "b"))
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "test_probs.npy"),
                                  np.load(tmp_path / "b" / "test_probs.npy"))
    assert first["test/macro_f1"] == second["test/macro_f1"]


def test_bad_data_through_train_raises_data_error(goemotions_dir, tmp_path):
    data = shutil.copytree(goemotions_dir, tmp_path / "data")
    lines = (data / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[9] = "a text\t99\tid\n"
    (data / "dev.tsv").write_text("".join(lines), encoding="utf-8")
    cfg = compose_train_cfg(data, tmp_path / "run")
    with pytest.raises(DataError, match=f"{data / 'dev.tsv'}:10: label id 99 out of range"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_missing_data_dir_through_train(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="data.dir=.*nowhere: no such directory"):
        train(make_cfg(f"data.dir={tmp_path / 'nowhere'}"))


# ---------------------------------------------------------------- loss weights


def test_pos_weight_settings():
    assert pos_weight_from(None, [0.1, 0.5], cap=10.0) is None
    balanced = pos_weight_from("balanced", [0.1, 0.5, 0.01], cap=10.0)
    torch.testing.assert_close(balanced, torch.tensor([9.0, 1.0, 10.0]))  # 99 capped at 10
    torch.testing.assert_close(pos_weight_from([2, 3], None, cap=10.0), torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match="balanced"):
        pos_weight_from("balanced", None, cap=10.0)


def test_balanced_pos_weight_trains(make_cfg):
    _, objects = train(make_cfg("model.loss.pos_weight=balanced", "debug=fdr"))
    weight = objects["model"].loss_fn.pos_weight
    assert weight.shape == (L,) and torch.all((weight >= 1) & (weight <= 10))


def test_reuse_freed_memory_sets_glibc_thresholds(monkeypatch):
    from emotion_lab.training import callbacks

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(callbacks.ctypes, "CDLL", lambda name: FakeLibc())
    trainer = type("T", (), {"strategy": type("S", (), {"root_device": torch.device("cpu")})})
    callbacks.ReuseFreedMemory(256, 1024).setup(trainer, None, "fit")
    if sys.platform.startswith("linux"):
        assert calls == [(callbacks.M_MMAP_THRESHOLD, 256 << 20),
                         (callbacks.M_TRIM_THRESHOLD, 1024 << 20)]
    with pytest.raises(ValueError, match="C int"):
        callbacks.ReuseFreedMemory(4096)


@pytest.mark.parametrize("fast", [True, False])
def test_cpu_training_swaps_in_fast_dropout_unless_told_not_to(make_cfg, fast):
    from emotion_lab.models.dropout import FastDropout

    _, objects = train(make_cfg("debug=fdr", f"model.fast_dropout={fast}"))
    kinds = {type(m) for m in objects["model"].model.modules()}
    assert (FastDropout in kinds) is fast and (torch.nn.Dropout in kinds) is not fast
