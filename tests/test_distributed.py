"""Distributed training on 2 CPU processes (gloo): DDP ends where one process ends on the same
data (validation predictions gathered from both ranks before thresholds are fitted, the test
split predicted in full, the run written once); DDP inside a multirun is refused with a
message that says what to do; the FSDP config builds Lightning's FSDP strategy."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import compose_config
from test_cli import run_cli

from emotion_lab.inference import predict_probs
from emotion_lab.models.saving import load_model

# no dropout: one process and two draw different masks; everything else must agree
SAME_DATA = ("backbone=tiny", "+backbone.random_init.hidden_dropout_prob=0.0",
             "+backbone.random_init.attention_probs_dropout_prob=0.0",
             "trainer.accelerator=cpu", "trainer.precision=32-true", "threads=1",
             "trainer.max_epochs=2", "data.batch_size=16", "data.eval_batch_size=16",
             "logger=csv", "callbacks.progress_bar=null")


@pytest.mark.slow
def test_ddp_on_two_processes_ends_where_one_process_ends(goemotions, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    for run_dir, extra in ((single, ()), (ddp, ("trainer=ddp", "trainer.devices=2"))):
        result = run_cli(*SAME_DATA, *extra, f"data.dir={goemotions.dir}",
                         f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((single / "metrics.json").read_text(encoding="utf-8"))
    two = json.loads((ddp / "metrics.json").read_text(encoding="utf-8"))
    assert two["global_steps"] == one["global_steps"] == 20  # the same global batches
    assert two["train/samples_seen"] == one["train/samples_seen"] == 2 * 160
    for key, value in one.items():
        if isinstance(value, float) and not key.startswith("time/"):
            assert two[key] == pytest.approx(value, abs=2e-4), key
    np.testing.assert_allclose(np.load(ddp / "val_probs.npy"), np.load(single / "val_probs.npy"),
                               atol=1e-4)
    test_probs = np.load(ddp / "test_probs.npy")
    assert test_probs.shape == (len(goemotions.rows["test.tsv"]), 28)  # both ranks' shares
    assert json.loads((ddp / "thresholds.json").read_text(encoding="utf-8")) == \
        json.loads((single / "thresholds.json").read_text(encoding="utf-8"))

    # written once: one history, as long as one process's; rank 1 logs to its own file
    def history(run_dir):
        with (run_dir / "csv" / "metrics.csv").open(newline="", encoding="utf-8") as f:
            return [(r["step"], r["epoch"]) for r in csv.DictReader(f)]
    assert history(ddp) == history(single)
    assert (ddp / "train_ddp_process_1.log").is_file()
    model, tokenizer, _ = load_model(ddp / "model")
    texts = [text for text, _, _ in goemotions.rows["test.tsv"]]
    np.testing.assert_allclose(predict_probs(model, tokenizer, texts), test_probs, atol=1e-5)


@pytest.mark.slow
def test_ddp_inside_a_multirun_is_refused_with_what_to_do(goemotions_dir, tmp_path):
    result = run_cli("-m", "seed=1,2", "trainer=ddp", "trainer.accelerator=cpu",
                     "trainer.devices=2", "backbone=tiny", f"data.dir={goemotions_dir}",
                     "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "cannot run inside a multirun" in output
    assert "hydra/launcher=slurm" in output  # what to do instead
    assert "Traceback" not in output
    assert not list((tmp_path / "sweep").glob("*/metrics.json"))


def test_the_fsdp_config_builds_lightnings_fsdp_strategy():
    """Lightning runs FSDP on GPUs only, so here the config is checked, not trained."""
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import FSDPStrategy

    cfg = compose_config("trainer=fsdp", "backbone=tiny", "paths.output_dir=/x")
    assert cfg.trainer.precision == "bf16-mixed"
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True  # LoRA: frozen and trained weights mix
    assert strategy.kwargs["auto_wrap_policy"].keywords["min_num_params"] == 1_000_000
    ddp = instantiate(compose_config("trainer=ddp", "paths.output_dir=/x").trainer.strategy)
    assert ddp._ddp_kwargs["broadcast_buffers"] is False
