"""A quiet console: stage lines and progress bars, no library notices known to be harmless,
and every other warning still shown."""

from __future__ import annotations

import logging
import os
import re
import warnings

import pytest
from test_cli import run_cli
from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig, BertModel

from emotion_lab.models.backbones import ExpectedNewHead, load_backbone
from emotion_lab.training.console import HARMLESS_WARNINGS, ConsoleFormatter, silence_known_warnings

# What a run printed before the console was quieted, and must not print again.
NOISE = ("LeafSpec", "custom batch sampler", "is_gradient_checkpointing", "GPU available",
         "litlogger", "LOAD REPORT", "Loading weights", "Writing model shards", "┏",
         "Automatic Mixed Precision", "Seed set to", "have no positive example")


BAR = re.compile(r"\|[^|]*\| *[\d?]+/[\d?]+ \[")  # tqdm: "|█████| 5/5 [00:00<..."
STAMP = re.compile(r"\d\d:\d\d:\d\d ")  # emotion_lab.training.console.ConsoleFormatter


def test_a_lora_run_prints_its_stages_and_nothing_else(goemotions_dir, tmp_path):
    result = run_cli("backbone=tiny", "adapter=lora", f"data.dir={goemotions_dir}",
                     "logger=none", "trainer.max_epochs=2", "trainer.accelerator=cpu",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    for stage in ("data: train 160 / val 60 / test 60 examples", "model: tiny / lora",
                  "training: up to 2 epoch(s)", "evaluation: per_label thresholds",
                  f"run written to {tmp_path / 'run'}"):
        assert stage in output, output[-3000:]
    assert [n for n in NOISE if n in output] == [], output[-3000:]
    # each line is a progress bar (a pipe shows every refresh; a terminal redraws them in
    # place) or one of our log lines, and there are few of those
    lines = [line for line in re.split(r"[\r\n]", output) if line.strip(" \x1b[A")]
    logged = [line for line in lines if STAMP.match(line)]
    assert [line for line in lines if not BAR.search(line) and not STAMP.match(line)] == []
    assert len(logged) <= 8, logged


def test_known_warnings_are_silenced_and_others_are_not():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...",
                      DeprecationWarning, stacklevel=1)
        warnings.warn("You are using a custom batch sampler `LengthGroupedBatches` for "
                      "prediction.", UserWarning, stacklevel=1)
        warnings.warn("You are using a custom batch sampler `TheirSampler` for prediction.",
                      UserWarning, stacklevel=1)
        warnings.warn("You're resuming from a checkpoint that ended before the epoch ended "
                      "and your dataloader is not resumable.", UserWarning, stacklevel=1)
        warnings.warn("something a user must act on", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "You are using a custom batch sampler `TheirSampler` for prediction.",
        "something a user must act on"]
    assert len(HARMLESS_WARNINGS) == 3


def srun_hints(monkeypatch, tmp_path, job_id: str | None) -> list[str]:
    """The warnings Lightning's SLURM check gives with an `srun` on PATH (as on a login node)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir(exist_ok=True)
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{os.environ['PATH']}")
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    if job_id:
        monkeypatch.setenv("SLURM_JOB_ID", job_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        SLURMEnvironment.detect()
    return [str(w.message) for w in caught if "srun" in str(w.message)]


def test_a_run_outside_slurm_is_quiet_where_slurm_is_installed(monkeypatch, tmp_path):
    assert srun_hints(monkeypatch, tmp_path, job_id=None) == []


def test_inside_a_slurm_job_the_srun_hint_stays(monkeypatch, tmp_path):
    assert len(srun_hints(monkeypatch, tmp_path, job_id="42")) == 1


def report(rows: str) -> logging.LogRecord:
    text = ("BertForSequenceClassification LOAD REPORT from: /m\nKey | Status | \n"
            f"----+--------+-\n{rows}\nNotes:\n- MISSING: newly initialized")
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, "", 0, text, (),
                             None)


def test_the_new_head_report_is_dropped_only_when_it_names_nothing_else():
    head = ExpectedNewHead(["pre_classifier", "classifier"])
    assert not head.filter(report("classifier.weight | MISSING | \n"
                                  "pre_classifier.bias | MISSING | "))
    assert head.filter(report("classifier.weight | MISSING | \n"
                              "bert.encoder.layer.0.attention.self.query.weight | MISSING | "))
    assert head.filter(report("classifier.weight | MISSING | \nbert.pooler.x | UNEXPECTED | "))
    assert ExpectedNewHead([]).filter(report("classifier.weight | MISSING | "))
    other = logging.LogRecord("transformers", logging.WARNING, "", 0, "anything else", (), None)
    assert head.filter(other)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize(("new_modules", "reported"), [(["classifier"], False), ([], True)])
def test_loading_a_pretrained_encoder_with_a_new_head(tmp_path, new_modules, reported):
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, vocab_size=100)).save_pretrained(tmp_path)
    backbone = {"model": str(tmp_path), "local_package": None}
    seen = Collect()
    logging.getLogger("transformers.modeling_utils").addHandler(seen)
    try:
        model = load_backbone(backbone, AutoModelForSequenceClassification, new_modules,
                              num_labels=3)
    finally:
        logging.getLogger("transformers.modeling_utils").removeHandler(seen)
    assert model.classifier.out_features == 3
    assert any("LOAD REPORT" in m for m in seen.messages) == reported, seen.messages


def test_local_loads_show_no_weight_bars(tmp_path, capsys):
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, vocab_size=100)).save_pretrained(tmp_path)
    capsys.readouterr()
    load_backbone({"model": str(tmp_path), "local_package": None}, AutoModel)
    assert "Loading weights" not in capsys.readouterr().err
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # turned back on after the load


def test_console_lines_are_short_and_warnings_say_so():
    formatter = ConsoleFormatter()
    info = logging.LogRecord("x", logging.INFO, "", 0, "data: train 10", (), None)
    warn = logging.LogRecord("x", logging.WARNING, "", 0, "3 labels lack positives", (), None)
    assert formatter.format(info)[8:] == " data: train 10"
    assert formatter.format(warn)[8:] == " warning: 3 labels lack positives"
