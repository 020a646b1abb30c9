"""Hydra face of training: `train(cfg)` does the work, `main()` parses the command line.

    python -m emotion_lab.train                              # MiniLM, full fine-tuning
    python -m emotion_lab.train adapter=lora threshold=global
    python -m emotion_lab.train -m adapter=full,lora,frozen_head

The recipe: seed; build data, model, callbacks, loggers, trainer; fit; predict validation and
test with the best checkpoint; evaluate (calibration and thresholds fitted on validation
only, frozen, applied to test); write the run directory (emotion_lab.rundir).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from emotion_lab.console import silence_known_warnings
from emotion_lab.data.types import DataError
from emotion_lab.evaluation.generation import evaluate_generated
from emotion_lab.evaluation.metrics import frequency_baseline
from emotion_lab.evaluation.run_evaluation import RunEvaluation, evaluate_run
from emotion_lab.models.backbones import BackboneError, load_tokenizer, weight_dtype
from emotion_lab.models.callbacks import TrainingClock
from emotion_lab.models.feature_cache import use_cached_features
from emotion_lab.models.loggers import run_id
from emotion_lab.models.precision import fast_precision
from emotion_lab.rundir import save_model, write_config, write_evaluation, write_json

log = logging.getLogger(__name__)
OmegaConf.register_new_resolver("run_id", run_id, replace=True)  # conf/logger/wandb.yaml


class ConfigError(ValueError):
    """A combination of settings that cannot run; the message says what to do instead."""


def train(cfg: DictConfig, callbacks: list | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train, pick the best checkpoint, fit thresholds on validation, evaluate, write the run.
    `callbacks`: Lightning callbacks besides the config's (a search's pruning callback).
    Returns (metrics, {cfg, datamodule, model, trainer})."""
    try:
        return _train(cfg, list(callbacks or []))
    finally:
        finish_wandb()


def _train(cfg: DictConfig, extra_callbacks: list) -> tuple[dict[str, Any], dict[str, Any]]:
    silence_known_warnings()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    threads = torch_threads(cfg.get("threads"))
    if threads:
        torch.set_num_threads(threads)
        log.info("torch threads: %d", threads)
    precision = training_precision(cfg)
    resolve_resume(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    check_weight_dtype(config["backbone"], precision)

    # build: data, model (and its cached features), callbacks, loggers, trainer
    tokenizer = load_tokenizer(config["backbone"])
    # a model that writes its labels gets prompts and answers (model.prompt), not inputs
    datamodule = build(cfg.data, tokenizer=tokenizer, prompt=config["model"].get("prompt"))
    datamodule.setup()
    single_label = datamodule.problem_type == "single_label"
    if single_label:
        say = log.warning if overridden("threshold") else log.info
        say("single-label task: the prediction is the arg-max class; threshold=%s does not "
            "apply and is ignored.", cfg.threshold.name)
    model = build(cfg.model, label_names=datamodule.label_names,
                  train_frequencies=datamodule.train_label_frequencies.tolist(),
                  problem_type=datamodule.problem_type)
    feature_seconds = None
    if cfg.adapter.get("cache_features"):
        feature_seconds = use_cached_features(model.model, datamodule, config["backbone"],
                                              cfg.paths.cache_dir,
                                              cfg.adapter.get("feature_batch_size"))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += extra_callbacks
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          precision=precision)
    check_launch(trainer)
    if cfg.get("threads") == "auto" and trainer.num_devices > 1 and \
            trainer.strategy.root_device.type == "cpu":
        # DDP on CPU: this node's processes share its cores
        torch.set_num_threads(max(1, available_cores() // trainer.num_devices))
    if trainer.is_global_zero:
        write_resume_command(Path(cfg.paths.output_dir))
    for logger in loggers:
        logger.log_hyperparams(config)

    # fit, then predict validation and test with the best checkpoint
    steps = f" or {trainer.max_steps} steps" if trainer.max_steps > 0 else ""
    log.info("training: up to %s epoch(s)%s in batches of %d, %s", trainer.max_epochs, steps,
             cfg.data.batch_size, precision)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path,
                weights_only=False)  # resuming reads our own pickled hparams
    seconds = {"fit": time.perf_counter() - start, "feature": feature_seconds}
    # read now: predicting from the best checkpoint restores the clock saved in it
    clock = next((c.state_dict() for c in trainer.callbacks if isinstance(c, TrainingClock)),
                 None)
    # fast_dev_run and runs without a checkpoint callback keep the last weights
    best = (trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback
            else "") or None
    val_probs, val_text = predict_split(trainer, model, datamodule.val_dataloader(), best)
    # the best weights are loaded into `model` now; test needs no second checkpoint read
    test_probs, test_text = predict_split(trainer, model, datamodule.test_dataloader(), None)

    # evaluate: calibration and thresholds fitted on validation only, applied to test
    splits = datamodule.splits
    evaluation = evaluate_run(
        val_probs, splits["val"].labels, test_probs, splits["test"].labels,
        datamodule.label_names, threshold_policy=model.hparams.threshold_policy,
        calibration=cfg.calibration.name, calibration_grid=cfg.calibration.get("grid"),
        single_label=single_label, taxonomies=datamodule.eval_taxonomies)
    if datamodule.format is not None:  # the model wrote answers: evaluate them too
        answers = {"val": val_text["generated"], "test": test_text["generated"]}
        evaluation = add_generated(evaluation, answers, splits, datamodule.format,
                                   single_label)
    objects = {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}
    if not trainer.is_global_zero:  # under DDP one process writes the run
        return evaluation.metrics, objects

    # write the run directory, then the loggers' summaries
    metrics = run_metrics(cfg, datamodule, model, trainer, evaluation, precision, seconds, best,
                          clock)
    write_run(Path(cfg.paths.output_dir), metrics, evaluation, datamodule, model, tokenizer,
              config)
    log_final(loggers, metrics, evaluation.per_label)
    remove_resume_point(Path(cfg.paths.output_dir))
    log.info("evaluation: %s thresholds fitted on validation (macro-F1 %.4f); test macro-F1 "
             "%.4f, micro-F1 %.4f", metrics["threshold_policy"], metrics["val/macro_f1"],
             metrics["test/macro_f1"], metrics["test/micro_f1"])
    log.info("run written to %s", cfg.paths.output_dir)
    return metrics, objects


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, with our own errors unwrapped: Hydra wraps whatever a constructor
    raises, and a bad backbone or data setting deserves its message, not a traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, (DataError, BackboneError)):
            raise e.__cause__ from None
        raise


def torch_threads(setting: Any) -> int | None:
    """Threads for this process's torch ops: an int; null (torch's default: every core); or
    auto, which divides the cores among the jobs a launcher runs side by side: the joblib
    launcher's n_jobs parallel jobs (-1: one per core) get cores // n_jobs each, a submitit
    job its cpus_per_task. Two jobs each using every core run many times slower than one
    job alone on 2 cores; divided, they run side by side at full speed."""
    if setting != "auto":
        return None if setting is None else int(setting)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    target = str(launcher.get("_target_", ""))
    cores = available_cores()
    if "JoblibLauncher" in target:
        jobs = launcher.get("n_jobs") or 1
        jobs = cores if jobs < 0 else jobs
        return max(1, cores // jobs)
    if "submitit_launcher" in target and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def check_launch(trainer: L.Trainer) -> None:
    """Refuse what cannot work: Lightning's DDP starts ranks 1..N-1 by running this process's
    command line again, and under `-m` that command is the whole sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    launcher = getattr(trainer.strategy, "launcher", None)
    relaunches = (type(launcher).__name__ == "_SubprocessScriptLauncher"
                  and not trainer.strategy.cluster_environment.creates_processes_externally)
    if relaunches and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"trainer.strategy=ddp with {trainer.num_devices} devices cannot run inside a "
            "multirun (-m): Lightning starts the other ranks by running the command line "
            "again, which would start the whole sweep again in each of them. Either run the "
            "sweep's jobs one by one as single runs (without -m), or let the cluster start "
            "the ranks: -m hydra/launcher=slurm hydra.launcher.tasks_per_node=<GPUs> "
            "hydra.launcher.gpus_per_node=<GPUs> trainer=ddp trainer.devices=<GPUs> "
            "(SLURM starts one process per GPU and Lightning joins them; README, "
            "\"Outgrowing one run\").")


def resolve_resume(cfg: DictConfig) -> None:
    """ckpt_path=last: this run directory's checkpoints/last.ckpt (written every few minutes
    of training), or a start from scratch where there is none yet."""
    given = cfg.get("ckpt_path")
    if given is not None and given != "last" and "://" not in str(given) and \
            not Path(given).is_file():
        raise ConfigError(f"ckpt_path={given}: no such checkpoint. Give a .ckpt file of a "
                          f"run (<run>/checkpoints/best.ckpt or last.ckpt), or ckpt_path=last "
                          f"with hydra.run.dir=<run> to resume that run where it stopped.")
    if given != "last":
        return
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s", last)
        cfg.ckpt_path = str(last)
        # Lightning's notice that the directory holds checkpoints: it is meant to, here
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not")
    else:
        log.info("ckpt_path=last: %s does not exist (yet): training from the start", last)
        cfg.ckpt_path = None


def write_resume_command(run_dir: Path) -> None:
    """<run>/resume.sh: the command that resumes this run from checkpoints/last.ckpt after a
    crash, in this directory (so its logs, W&B run and outputs continue)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    keep = [o for o in hydra_cfg.overrides.task if o.split("=")[0].lstrip("+~") not in
            ("ckpt_path", "paths.sweep_group")]
    extra = [f"hydra.run.dir={run_dir}"]
    if hydra_cfg.mode == RunMode.MULTIRUN:  # a sweep's job keeps its W&B group
        extra.append(f"paths.sweep_group={hydra_cfg.sweep.dir}")
    command = shlex.join(["python", "-m", "emotion_lab.train", *keep, *extra, "ckpt_path=last"])
    run_dir.mkdir(parents=True, exist_ok=True)
    # from the directory the run started in, where its relative paths point
    (run_dir / "resume.sh").write_text(
        "#!/bin/sh\n# Resume this run from its checkpoints/last.ckpt\n"
        f"cd {shlex.quote(os.getcwd())} || exit 1\n{command}\n", encoding="utf-8")


def remove_resume_point(run_dir: Path) -> None:
    """A finished run has nothing to resume: its last.ckpt (the size of best.ckpt) and
    resume.sh go; best.ckpt and model/ stay."""
    (run_dir / "checkpoints" / "last.ckpt").unlink(missing_ok=True)
    (run_dir / "resume.sh").unlink(missing_ok=True)
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()


def check_weight_dtype(backbone: dict[str, Any], precision: str) -> None:
    """Frozen weights in bf16/fp16 only work where autocast casts activations to match."""
    dtype = weight_dtype(backbone)
    wanted = {torch.bfloat16: "bf16", torch.float16: "16"}.get(dtype)
    if wanted and not precision.startswith(wanted):
        raise BackboneError(
            f"backbone.dtype={backbone.get('dtype')} needs trainer.precision={wanted}-mixed; "
            f"this run trains in {precision} (on this machine trainer.precision=auto picks "
            f"it). Set backbone.dtype=float32, or trainer.precision={wanted}-mixed where the "
            f"hardware runs it natively.")


def training_precision(cfg: DictConfig) -> str:
    """The Trainer's precision: `auto` is bf16-mixed where bf16 is native, else 32-true."""
    precision = cfg.trainer.get("precision", "auto")
    if precision == "auto":
        precision = fast_precision(cfg.trainer.get("accelerator", "auto"))
    if str(precision).startswith("16") and cfg.model.optimizer.get("fused"):
        # fp16's grad scaler: a fused optimizer unscales inside its step, after clipping
        # would have had to unscale; Lightning refuses, so fp16 steps with foreach AdamW.
        # (bf16 has no scaler: EmotionModule clips and the fused step stays.)
        log.info("precision=%s: using foreach AdamW (fused cannot clip gradients under fp16's "
                 "grad scaler)", precision)
        cfg.model.optimizer.fused = False
    return str(precision)


def predict_split(trainer: L.Trainer, model: L.LightningModule, loader,
                  ckpt_path: str | None) -> tuple[np.ndarray, dict[str, list]]:
    """Probabilities for a split in its original order (loaders yield length-sorted batches),
    and any per-example lists the model returns besides (a generative model's answers)."""
    outputs = trainer.predict(model, dataloaders=loader, ckpt_path=ckpt_path,
                              weights_only=False)  # our own checkpoint: hparams are pickled
    if trainer.world_size > 1:  # DDP: each rank predicted its share of the split
        gathered = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, outputs)
        outputs = [o for rank in gathered for o in rank]
    index = torch.cat([o["index"] for o in outputs])
    probs = torch.cat([o["probs"] for o in outputs]).float()
    ordered = torch.empty_like(probs)
    ordered[index] = probs
    extras = {}
    for key in (k for k, v in outputs[0].items() if isinstance(v, list)):
        values = [None] * len(index)
        for i, value in zip(index.tolist(), (v for o in outputs for v in o[key]), strict=True):
            values[i] = value
        extras[key] = values
    return ordered.numpy(), extras


def add_generated(evaluation: RunEvaluation, answers: dict[str, list[str]], splits,
                  fmt, single_label: bool) -> RunEvaluation:
    """The generated answers' metrics, predictions and rows beside the score-based ones."""
    for split, texts in answers.items():
        metrics, preds, rows = evaluate_generated(texts, splits[split].labels, fmt, split,
                                                  single_label)
        evaluation.metrics |= metrics
        evaluation.arrays[f"{split}_generated_preds"] = preds
        evaluation.answers[split] = rows
    return evaluation


def run_metrics(cfg: DictConfig, datamodule, model, trainer: L.Trainer,
                evaluation: RunEvaluation, precision: str, seconds: dict[str, float | None],
                best: str | None, clock: dict[str, float] | None) -> dict[str, Any]:
    """metrics.json: what ran, the evaluation, the text-blind baseline, size and time.
    `clock`: the TrainingClock's seconds and samples at the end of training."""
    single_label = datamodule.problem_type == "single_label"
    return {
        "backbone": cfg.backbone.name, "adapter": cfg.adapter.name,
        "model": "classifier" if datamodule.format is None else "generative",
        "threshold_policy": "argmax" if single_label else cfg.threshold.name,
        "calibration": evaluation.calibration,
        "problem_type": datamodule.problem_type, "taxonomy": datamodule.taxonomy,
        "num_labels": len(datamodule.label_names),
        # training ran in `precision`; the saved arrays are always fp32 (predict_step)
        "precision": precision, "eval_precision": "32-true",
        **evaluation.metrics,
        "test/macro_f1_frequency_baseline": frequency_baseline(
            datamodule.train_label_frequencies, datamodule.splits["test"].labels,
            seed=cfg.get("seed") or 0, single_label=single_label),
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


def write_run(run_dir: Path, metrics: dict[str, Any], evaluation: RunEvaluation,
              datamodule, model, tokenizer, config: dict[str, Any]) -> None:
    """Every file of the run directory (the contract is emotion_lab.rundir's docstring)."""
    labels, splits = datamodule.label_names, datamodule.splits
    write_evaluation(run_dir, metrics, evaluation, labels)
    write_json(run_dir / "data_report.json", datamodule.report | {"train_label_counts": dict(
        zip(labels, splits["train"].labels.sum(axis=0).astype(int).tolist(), strict=True))})
    write_json(run_dir / "test_texts.json", list(splits["test"].texts))  # error analysis
    write_config(run_dir, config)
    temperatures = evaluation.temperatures
    generative = {k: config["model"][k] for k in ("prompt", "generation")} \
        if "prompt" in config["model"] else None
    save_model(run_dir / "model", model.model, tokenizer, config["backbone"],
               config["model"].get("head"), config["adapter"]["name"], labels,
               datamodule.problem_type, None if temperatures is None else temperatures.tolist(),
               generative)


def overridden(group: str) -> bool:
    """Whether the command line set `group` (or a key in it); False outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    keys = (o.lstrip("+~").split("=")[0] for o in HydraConfig.get().overrides.task)
    return any(k == group or k.startswith(f"{group}.") for k in keys)


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


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics, _ = train(cfg)
    except (DataError, BackboneError, ConfigError) as e:
        log.error("%s", e)
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
