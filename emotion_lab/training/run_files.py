"""The end of a run: metrics.json's record of what ran and how well, every file of the run
directory (the contract is emotion_lab/rundir.py), and the loggers' summaries."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from emotion_lab.evaluation.figures import plot_confusion
from emotion_lab.evaluation.metrics import frequency_baseline
from emotion_lab.evaluation.run_evaluation import RunEvaluation
from emotion_lab.models.kinds import ModelKind
from emotion_lab.models.saving import save_model
from emotion_lab.rundir import RUN_FORMAT, write_config, write_evaluation, write_json


def run_metrics(cfg: DictConfig, kind: ModelKind, datamodule, model, trainer: L.Trainer,
                evaluation: RunEvaluation, precision: str, seconds: dict[str, float | None],
                best: str | None, clock: dict[str, float] | None) -> dict[str, Any]:
    """metrics.json: what ran, the evaluation, the text-blind baseline, size and time.
    `clock`: the TrainingClock's seconds and samples at the end of training."""
    problem = datamodule.problem
    return {
        "run_format": RUN_FORMAT, "backbone": cfg.backbone.name, "adapter": cfg.adapter.name,
        "model": kind.name,
        "threshold_policy": "argmax" if problem.single_label else cfg.threshold.name,
        "calibration": evaluation.calibration,
        "problem_type": problem.name, "taxonomy": datamodule.taxonomy,
        "num_labels": len(datamodule.label_names),
        # training ran in `precision`; the saved arrays are always fp32 (predict_step)
        "precision": precision, "eval_precision": "32-true",
        **evaluation.metrics,
        "test/macro_f1_frequency_baseline": frequency_baseline(
            datamodule.train_label_frequencies, datamodule.splits["test"].labels,
            seed=cfg.get("seed") or 0, single_label=problem.single_label),
        "params/trainable": model.trainable_params, "params/total": model.total_params,
        "params/trainable_share": model.trainable_params / model.total_params,
        "time/fit_seconds": seconds["fit"],
        "time/feature_seconds": seconds["feature"],
        "time/train_seconds": clock["seconds"] if clock else None,
        "time/train_samples_per_second":
            (clock["samples"] / clock["seconds"] if clock["seconds"] else 0.0) if clock else None,
        "train/samples_seen": clock["samples"] if clock else None,
        "epochs": trainer.current_epoch, "global_steps": trainer.global_step,
        "best_checkpoint": best,
    }


def write_run(run_dir: Path, kind: ModelKind, metrics: dict[str, Any],
              evaluation: RunEvaluation, datamodule, model, tokenizer,
              config: dict[str, Any]) -> None:
    """Every file of the run directory."""
    labels, splits = datamodule.label_names, datamodule.splits
    write_evaluation(run_dir, metrics, evaluation, labels)
    plot_confusion(run_dir, evaluation, labels)
    write_json(run_dir / "data_report.json", datamodule.report | {"train_label_counts": dict(
        zip(labels, splits["train"].labels.sum(axis=0).astype(int).tolist(), strict=True))})
    write_json(run_dir / "test_texts.json", list(splits["test"].texts))  # error analysis
    write_config(run_dir, config)
    temperatures = evaluation.temperatures
    spec = {"kind": kind.name, "adapter": config["adapter"]["name"],
            "head": config["model"].get("head"), "labels": labels,
            "problem_type": datamodule.problem.name,
            "temperatures": None if temperatures is None else temperatures.tolist(),
            "backbone": config["backbone"], **kind.spec(config["model"])}
    save_model(run_dir / "model", model.model, tokenizer, spec,
               model.hparams.adapter.saves_adapter)


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


def finish_wandb() -> None:
    """Close the W&B run so that the next job of a multirun starts its own."""
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()
