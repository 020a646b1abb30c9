"""Training: `train(cfg)` is the recipe, `main()` its Hydra face.

    python -m emotion_lab.train                              # MiniLM, full fine-tuning
    python -m emotion_lab.train adapter=lora threshold=global
    python -m emotion_lab.train -m adapter=full,lora,frozen_head

Seed; build data, model, callbacks, loggers and trainer; fit; predict validation and test
with the best checkpoint; evaluate (calibration and thresholds fitted on validation only,
frozen, applied to test); write the run directory (emotion_lab/rundir.py). The machinery
(resuming, precision, threads, the DDP gather, the run's files) is in emotion_lab/training/.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from emotion_lab import settings
from emotion_lab.cli import check_overrides, hydra_face
from emotion_lab.evaluation.run_evaluation import evaluate_run
from emotion_lab.models.backbones import load_tokenizer
from emotion_lab.models.feature_cache import use_cached_features
from emotion_lab.models.kinds import kind_of
from emotion_lab.training.callbacks import TrainingClock
from emotion_lab.training.console import silence_known_warnings
from emotion_lab.training.loggers import run_id
from emotion_lab.training.predictions import predict_split
from emotion_lab.training.resume import (
    remove_resume_point,
    resolve_resume,
    write_resume_command,
)
from emotion_lab.training.run_files import finish_wandb, log_final, run_metrics, write_run
from emotion_lab.training.setup import (
    build,
    check_launch,
    check_weight_dtype,
    overridden,
    set_threads,
    share_cores,
    training_precision,
)

log = logging.getLogger(__name__)
OmegaConf.register_new_resolver("run_id", run_id, replace=True)  # conf/logger/wandb.yaml


def train(cfg: DictConfig, callbacks: list | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train, pick the best checkpoint, fit thresholds on validation, evaluate, write the run.
    `callbacks`: Lightning callbacks besides the config's (a search's pruning callback).
    Returns (metrics, {cfg, datamodule, model, trainer})."""
    try:
        return _train(cfg, list(callbacks or []))
    finally:
        finish_wandb()


def _train(cfg: DictConfig, extra_callbacks: list) -> tuple[dict[str, Any], dict[str, Any]]:
    settings.check(cfg)
    silence_known_warnings()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    set_threads(cfg.get("threads"))
    precision = training_precision(cfg)
    resolve_resume(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    check_weight_dtype(config["backbone"], precision)
    kind = kind_of(cfg.model.kind)
    run_dir = Path(cfg.paths.output_dir)

    # build: data, model (and its cached features), callbacks, loggers, trainer
    tokenizer = load_tokenizer(config["backbone"])
    datamodule = build(cfg.data, tokenizer=tokenizer, prompt=kind.prompt(config["model"]))
    datamodule.setup()
    problem = datamodule.problem
    if problem.single_label:
        say = log.warning if overridden("threshold") else log.info
        say("single-label task: the prediction is the arg-max class; threshold=%s does not "
            "apply and is ignored.", cfg.threshold.name)
    model = build(cfg.model, label_names=datamodule.label_names,
                  train_frequencies=datamodule.train_label_frequencies.tolist(),
                  problem_type=problem.name)
    feature_seconds = None
    if cfg.adapter.get("cache_features"):
        feature_seconds = use_cached_features(
            model.model, datamodule, config["backbone"], config["model"]["head"],
            cfg.paths.cache_dir, cfg.adapter.get("feature_batch_size"),
            cfg.adapter.get("cache_every_state", False))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = instantiate(cfg.trainer, callbacks=callbacks + extra_callbacks,
                          logger=loggers or False, precision=precision)
    check_launch(trainer)
    share_cores(cfg, trainer)
    if trainer.is_global_zero:
        write_resume_command(run_dir)
    for logger in loggers:
        logger.log_hyperparams(config)

    # fit, then predict validation and test with the best checkpoint
    steps = f" or {trainer.max_steps} steps" if trainer.max_steps > 0 else ""
    log.info("training: up to %s epoch(s)%s in batches of %d, %s", trainer.max_epochs, steps,
             datamodule.batch_size, precision)  # the head's own on cached features
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path,
                weights_only=False)  # resuming reads our own pickled hparams
    seconds = {"fit": time.perf_counter() - start, "feature": feature_seconds}
    # read now: predicting from the best checkpoint restores the clock saved in it
    clock = next((c.state_dict() for c in trainer.callbacks if isinstance(c, TrainingClock)),
                 None)
    # fast_dev_run and runs without a checkpoint callback keep the last weights
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    val_probs, val_extras = predict_split(trainer, model, datamodule.val_dataloader(), best)
    # the best weights are loaded into `model` now; test needs no second checkpoint read
    test_probs, test_extras = predict_split(trainer, model, datamodule.test_dataloader(), None)

    # evaluate: calibration and thresholds fitted on validation only, applied to test
    splits, labels = datamodule.splits, datamodule.label_names
    evaluation = evaluate_run(
        val_probs, splits["val"].labels, test_probs, splits["test"].labels, labels,
        threshold_policy=model.hparams.threshold_policy, calibration=cfg.calibration.name,
        calibration_grid=cfg.calibration.get("grid"), single_label=problem.single_label,
        taxonomies=datamodule.eval_taxonomies)
    evaluation = kind.add_evaluation(evaluation, {"val": val_extras, "test": test_extras},
                                     splits, config["model"], labels, problem)
    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}
    if not trainer.is_global_zero:  # under DDP one process writes the run
        return evaluation.metrics, objects

    # write the run directory, then the loggers' summaries
    metrics = run_metrics(cfg, kind, datamodule, model, trainer, evaluation, precision, seconds,
                          best, clock)
    write_run(run_dir, kind, metrics, evaluation, datamodule, model, tokenizer, config)
    log_final(loggers, metrics, evaluation.per_label)
    remove_resume_point(run_dir)
    log.info("evaluation: %s thresholds fitted on validation (macro-F1 %.4f); test macro-F1 "
             "%.4f, micro-F1 %.4f", metrics["threshold_policy"], metrics["val/macro_f1"],
             metrics["test/macro_f1"], metrics["test/micro_f1"])
    log.info("run written to %s", run_dir)
    return metrics, objects


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@hydra_face
def main(cfg: DictConfig) -> float | None:
    metrics, _ = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    check_overrides("train")
    main()
