"""Hydra face of training: `train(cfg)` does the work, `main()` parses the command line.

    python -m emotion_lab.train                              # MiniLM, full fine-tuning
    python -m emotion_lab.train adapter=lora threshold=global
    python -m emotion_lab.train -m adapter=full,lora,frozen_head
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from emotion_lab.backbones import BackboneError, PooledClassifier, load_tokenizer
from emotion_lab.calibration import apply_temperature, brier_per_label, ece_per_label
from emotion_lab.callbacks import TrainingClock
from emotion_lab.data import DataError
from emotion_lab.features import cached_features
from emotion_lab.hardware import fast_precision
from emotion_lab.metrics import evaluate, frequency_baseline
from emotion_lab.rundir import save_model, write_json, write_results
from emotion_lab.taxonomy import evaluate_grouped
from emotion_lab.thresholds import calibrate

log = logging.getLogger(__name__)


def predict_split(trainer: L.Trainer, model: L.LightningModule, loader,
                  ckpt_path: str | None) -> np.ndarray:
    """Probabilities for a split in its original order (loaders yield length-sorted batches)."""
    outputs = trainer.predict(model, dataloaders=loader, ckpt_path=ckpt_path,
                              weights_only=False)  # our own checkpoint: hparams are pickled
    index = torch.cat([o["index"] for o in outputs])
    probs = torch.cat([o["probs"] for o in outputs]).float()
    ordered = torch.empty_like(probs)
    ordered[index] = probs
    return ordered.numpy()


def overridden(group: str) -> bool:
    """Whether the command line set `group` (or a key in it); False outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    keys = (o.lstrip("+~").split("=")[0] for o in HydraConfig.get().overrides.task)
    return any(k == group or k.startswith(f"{group}.") for k in keys)


def finish_wandb() -> None:
    """Close the W&B run so that the next job of a multirun starts its own."""
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train, pick the best checkpoint, fit thresholds on validation, evaluate, write the run."""
    try:
        return _train(cfg)
    finally:
        finish_wandb()


def _train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)
    precision = cfg.trainer.get("precision", "auto")
    if precision == "auto":
        precision = fast_precision(cfg.trainer.get("accelerator", "auto"))
    if "mixed" in str(precision) and cfg.model.optimizer.get("fused"):
        # Lightning refuses gradient clipping with a fused optimizer under mixed precision
        log.info("precision=%s: using foreach AdamW (fused cannot clip gradients here)",
                 precision)
        cfg.model.optimizer.fused = False
    config = OmegaConf.to_container(cfg, resolve=True)

    tokenizer = load_tokenizer(config["backbone"])
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    datamodule.setup()
    labels = datamodule.label_names
    single_label = datamodule.problem_type == "single_label"
    if single_label:
        say = log.warning if overridden("threshold") else log.info
        say("single-label task: the prediction is the arg-max class; threshold=%s does not "
            "apply and is ignored.", cfg.threshold.name)
    model = instantiate(cfg.model, label_names=labels,
                        train_frequencies=datamodule.train_label_frequencies.tolist(),
                        problem_type=datamodule.problem_type)
    log.info("%s / %s: %d of %d parameters train (%.2f%%)", cfg.backbone.name, cfg.adapter.name,
             model.trainable_params, model.total_params,
             100 * model.trainable_params / model.total_params)

    feature_seconds = None
    if cfg.adapter.get("cache_features"):
        if isinstance(model.model, PooledClassifier):
            start = time.perf_counter()
            datamodule.use_features(cached_features(
                model.model, datamodule.tokenized, config["backbone"], cfg.paths.cache_dir,
                datamodule.eval_batch_size), cfg.adapter.get("feature_batch_size"))
            feature_seconds = time.perf_counter() - start  # near zero when cached
        else:
            log.info("adapter.cache_features needs emotion_lab's own head (model.head.pooling="
                     "mean or a hidden layer); HF's head trains through the frozen backbone.")
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          precision=precision)
    for logger in loggers:
        logger.log_hyperparams(config)

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"),
                weights_only=False)  # resuming reads our own pickled hparams
    fit_seconds = time.perf_counter() - start
    # fast_dev_run and runs without a checkpoint callback keep the last weights.
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best = best or None

    splits = datamodule.splits
    val_probs = predict_split(trainer, model, datamodule.val_dataloader(), best)
    # the best weights are loaded into `model` now; test needs no second checkpoint read
    test_probs = predict_split(trainer, model, datamodule.test_dataloader(), None)
    val_labels, test_labels = splits["val"].labels, splits["test"].labels
    temperatures, uncalibrated, calibration_info = None, {}, {}
    if cfg.calibration.name != "none" and single_label:
        log.warning("calibration=%s: temperature scaling here is per-label sigmoid scaling, "
                    "for multi-label runs; ignored.", cfg.calibration.name)
    elif cfg.calibration.name != "none":
        temperatures, calibration_info = calibrate(  # validation only
            cfg.calibration.name, val_probs, val_labels, model.thresholds,
            cfg.calibration.get("grid"))
        uncalibrated = {"val_probs_uncalibrated": val_probs,
                        "test_probs_uncalibrated": test_probs}
        val_probs = apply_temperature(val_probs, temperatures)
        test_probs = apply_temperature(test_probs, temperatures)
    thresholds = model.thresholds(val_probs, val_labels)  # validation only
    val_summary, val_rows = evaluate(val_probs, val_labels, thresholds, labels, "val")
    test_summary, test_rows = evaluate(test_probs, test_labels, thresholds, labels, "test")
    per_label = {"val": val_rows, "test": test_rows}
    for split, labels_ in (("val", val_labels), ("test", test_labels)):
        if uncalibrated:  # the same scores before scaling, for before/after comparisons
            raw = uncalibrated[f"{split}_probs_uncalibrated"]
            summary = val_summary if split == "val" else test_summary
            summary[f"{split}/macro_ece_uncalibrated"] = float(ece_per_label(raw, labels_).mean())
            summary[f"{split}/macro_brier_uncalibrated"] = float(
                brier_per_label(raw, labels_).mean())
    if not single_label:
        grouped, grouped_rows = evaluate_grouped(
            {"val": val_probs, "test": test_probs}, {"val": val_labels, "test": test_labels},
            labels, datamodule.eval_taxonomies, model.hparams.threshold_policy)
        test_summary |= grouped
        per_label |= grouped_rows

    if not trainer.is_global_zero:  # under DDP one process writes the run
        return val_summary | test_summary, {"cfg": cfg, "datamodule": datamodule,
                                            "model": model, "trainer": trainer}
    clock = next((c for c in callbacks if isinstance(c, TrainingClock)), None)
    metrics: dict[str, Any] = {
        "backbone": cfg.backbone.name, "adapter": cfg.adapter.name,
        "threshold_policy": "argmax" if single_label else cfg.threshold.name,
        "calibration": "none" if temperatures is None else cfg.calibration.name,
        "problem_type": datamodule.problem_type, "taxonomy": datamodule.taxonomy,
        "num_labels": len(labels),
        # training ran in `precision`; the saved arrays are always fp32 (module.predict_step)
        "precision": str(precision), "eval_precision": "32-true",
        **val_summary, **test_summary, **calibration_info,
        "test/macro_f1_frequency_baseline": frequency_baseline(
            datamodule.train_label_frequencies, test_labels, seed=cfg.get("seed") or 0,
            single_label=single_label),
        "params/trainable": model.trainable_params, "params/total": model.total_params,
        "params/trainable_share": model.trainable_params / model.total_params,
        "time/fit_seconds": fit_seconds,
        "time/feature_seconds": feature_seconds,
        "time/train_seconds": clock.seconds if clock else None,
        "time/train_samples_per_second": clock.samples_per_second if clock else None,
        "train/samples_seen": clock.samples if clock else None,
        "epochs": trainer.current_epoch, "global_steps": trainer.global_step,
        "best_checkpoint": best,
    }
    write_results(run_dir, metrics, per_label, thresholds, labels,
                  {"val_probs": val_probs, "val_labels": val_labels,
                   "test_probs": test_probs, "test_labels": test_labels, **uncalibrated})
    if temperatures is not None:
        write_json(run_dir / "temperatures.json",
                   {name: float(t) for name, t in zip(labels, temperatures, strict=True)})
    write_json(run_dir / "data_report.json", datamodule.report | {"train_label_counts": dict(
        zip(labels, splits["train"].labels.sum(axis=0).astype(int).tolist(), strict=True))})
    write_json(run_dir / "test_texts.json", list(splits["test"].texts))  # error analysis
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config), encoding="utf-8")
    save_model(run_dir / "model", model.model, tokenizer, config["backbone"],
               config["model"]["head"], cfg.adapter.name, labels, datamodule.problem_type,
               None if temperatures is None else temperatures.tolist())
    log_final(loggers, metrics, per_label)
    log.info("test macro-F1 %.4f (%s), run written to %s", metrics["test/macro_f1"],
             metrics["threshold_policy"], run_dir)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def log_final(loggers: list, metrics: dict[str, Any], per_label: dict[str, list[dict]]) -> None:
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    per_label_f1 = {f"{split}/f1/{row['label']}": row["f1"]
                    for split, rows in per_label.items() for row in rows}
    for logger in loggers:
        logger.log_metrics({**numeric, **per_label_f1})
        if hasattr(logger.experiment, "summary"):  # W&B: a summary and a per-label table
            logger.experiment.summary.update(numeric)
            columns = ["split", *per_label["test"][0].keys()]
            logger.log_table(key="per_label", columns=columns,
                             data=[[s, *r.values()] for s, rows in per_label.items() for r in rows])
        logger.save()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics, _ = train(cfg)
    except (DataError, BackboneError) as e:
        log.error("%s", e)
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
