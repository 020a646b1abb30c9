"""The schema of the settings: each key's type, range or choices, checked over the composed
config before anything is built.

One validation step over the composed config, rather than Hydra structured configs: several
settings are unions that OmegaConf's dataclass schemas cannot state (`threads`: auto, null or
a number; `trainer.devices`: auto, -1, a count or a list), rules also hold between keys
(fractions that must leave a training split) and against the disk (paths that must exist),
and one table covers every face's config (train, evaluate, prepare, rationales) without a
dataclass per group option. Hydra already refuses keys that do not exist and group options
that are not there; this refuses values. A refusal is one ConfigError naming every bad key,
its value and what is allowed; `emotion_lab.cli.check_overrides` runs it for each job of a
command line before Hydra creates a run directory, and `train()` runs it for API callers.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emotion_lab.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What one key may hold. `kind`: int, float, str, bool, list or dir (a folder that
    must exist); `low`/`high` bound numbers (`open` excludes the ends); `choices` (or a
    function giving them) lists the allowed words; `also`: words allowed besides the kind;
    `or_file`: the path of a file is allowed too."""

    kind: str
    low: float | None = None
    high: float | None = None
    open: bool = False
    choices: tuple | Callable[[], tuple] | None = None
    also: tuple = ()
    nullable: bool = False
    or_file: bool = False

    def allowed(self) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(map(str, self._choices()))
        elif self.kind in ("int", "float"):
            text = "an integer" if self.kind == "int" else "a number"
            lt, le = (">", "<") if self.open else (">=", "<=")
            bounds = [f"{lt} {self.low:g}" if self.low is not None else "",
                      f"{le} {self.high:g}" if self.high is not None else ""]
            text += " " + " and ".join(b for b in bounds if b) if any(bounds) else ""
        elif self.kind == "dir":
            text = "an existing folder"
        else:
            text = {"str": "a string", "bool": "true or false", "list": "a list"}[self.kind]
        extra = [*map(str, self.also), *(["the path of a file"] if self.or_file else []),
                 *(["null"] if self.nullable else [])]
        return text + (f", or {', '.join(extra)}" if extra else "")

    def _choices(self) -> tuple:
        return self.choices() if callable(self.choices) else self.choices

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if value in self.also and type(value) is not bool:
            return True
        if self.or_file and isinstance(value, str) and Path(value).expanduser().is_file():
            return True
        if self.choices is not None:  # 32 and "32" alike: YAML reads some words as numbers
            return str(value) in map(str, self._choices())
        if self.kind == "dir":
            return isinstance(value, str) and Path(value).expanduser().is_dir()
        if self.kind == "list":
            return isinstance(value, list)
        types = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
        if not isinstance(value, types[self.kind]) or (
                isinstance(value, bool) and self.kind != "bool"):
            return False
        if self.low is not None and (value <= self.low if self.open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open else value <= self.high)


def _kinds() -> tuple:
    from emotion_lab.models.kinds import KINDS

    return tuple(KINDS)


def _poolings() -> tuple:
    from emotion_lab.models.heads import HF_POOLINGS, POOLINGS

    return tuple(dict.fromkeys((*POOLINGS, *HF_POOLINGS)))


def _head_poolings() -> tuple:
    from emotion_lab.models.heads import HEAD_POOLINGS, HF_POOLINGS

    return tuple(dict.fromkeys((*HEAD_POOLINGS, *HF_POOLINGS)))


def _layer_mixes() -> tuple:
    from emotion_lab.models.heads import LAYER_MIXES

    return LAYER_MIXES


def _losses() -> tuple:
    from emotion_lab.models.losses import LOSSES

    return LOSSES


def _taxonomies() -> tuple:
    from emotion_lab.data.taxonomy import available

    return tuple(available())


def Int(low: float | None = None, **kw: Any) -> Rule:  # noqa: N802 (reads as a type)
    return Rule("int", low=low, **kw)


def Float(low: float | None = None, high: float | None = None, **kw: Any) -> Rule:  # noqa: N802
    return Rule("float", low=low, high=high, **kw)


def Choice(*choices: Any, among: Callable[[], tuple] | None = None,  # noqa: N802
           or_file: bool = False) -> Rule:
    return Rule("str", choices=among or choices, or_file=or_file)


FRACTION = Float(0, 1, open=True)
PROBABILITY = Float(0, 1)
PRECISIONS = ("auto", "64", "64-true", "32", "32-true", "16", "16-mixed", "16-true",
              "bf16", "bf16-mixed", "bf16-true", "transformer-engine",
              "transformer-engine-float16")

# Keys absent from a face's config are skipped, so one table serves every face. `*` matches
# one level of keys.
RULES: dict[str, Rule] = {
    "seed": Int(nullable=True),
    "threads": Int(1, also=("auto",), nullable=True),
    "optimized_metric": Rule("str"),
    "data.dir": Rule("dir", nullable=True),
    "data.batch_size": Int(1),
    "data.eval_batch_size": Int(1),
    "data.num_workers": Int(0),
    "data.max_train_examples": Int(1, nullable=True),
    "data.max_eval_examples": Int(1, nullable=True),
    "data.max_length": Int(1),
    "data.taxonomy": Choice(among=_taxonomies, or_file=True),
    "data.source.val_fraction": FRACTION,
    "data.source.test_fraction": FRACTION,
    "data.source.min_agreement": Int(1),
    "data.source.from_hub": Rule("bool"),
    "data.source.examples.*": Int(1),  # data=synthetic
    "data.source.max_labels": Int(1),
    "data.distill.teachers": Rule("list", nullable=True, or_file=True),
    "data.distill.weight": PROBABILITY,
    "data.clean.min_chars": Int(0),
    "data.clean.min_words": Int(0),
    "data.clean.neutral_share": Float(0, 1, nullable=True),
    "data.clean.label_issues.enabled": Rule("bool"),
    "data.clean.label_issues.folds": Int(2),
    "data.clean.label_issues.max_share": Float(0, 1, open=True, nullable=True),
    "data.clean.outliers.enabled": Rule("bool"),
    "data.clean.outliers.k": Int(1),
    "data.clean.outliers.quantile": FRACTION,
    "backbone.model": Rule("str"),
    "backbone.tokenizer": Rule("str", nullable=True),
    "backbone.max_length": Int(1),
    "backbone.pooling": Choice(among=_poolings),
    "backbone.dtype": Choice("float32", "bfloat16", "float16"),
    "backbone.lr.*": Float(0, open=True),
    "model.kind": Choice(among=_kinds),
    "model.head.pooling": Choice(among=_head_poolings),
    "model.head.dropout": Float(0, 1, nullable=True),
    "model.head.hidden_size": Int(1, nullable=True),
    "model.head.layers": Rule("list", also=("last", "all")),  # indices: heads.hidden_layers
    "model.head.layer_mix": Choice(among=_layer_mixes),
    "model.loss.max_pos_weight": Float(0, open=True, nullable=True),
    "model.loss.name": Choice(among=_losses),
    "model.loss.gamma_neg": Float(0),
    "model.loss.gamma_pos": Float(0),
    "model.loss.clip": Float(0, 1, open=True, also=(0,)),
    "model.layer_lr_decay": Float(0, 1, open=True, nullable=True),
    "model.optimizer.lr": Float(0, open=True),
    "model.optimizer.weight_decay": Float(0),
    "model.warmup_ratio": PROBABILITY,
    "model.generation.constrained": Rule("bool"),
    "model.scoring.method": Choice("auto", "yes_no", "first_label"),
    "model.scoring.weight": Float(0),
    "model.scoring.content_free": Rule("list"),
    "adapter.r": Int(1),
    "adapter.alpha": Float(0, open=True),
    "adapter.dropout": Float(0, 1),
    "adapter.feature_batch_size": Int(1, nullable=True),
    "adapter.cache_features": Rule("bool"),
    "adapter.cache_every_state": Rule("bool"),
    "threshold.policy.step": Float(0, 1, open=True),
    "trainer.accelerator": Choice("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "trainer.devices": Int(1, also=("auto", -1)),
    "trainer.max_epochs": Int(0, also=(-1,), nullable=True),  # 0: evaluate untrained
    "trainer.max_steps": Int(1, also=(-1,)),
    "trainer.precision": Choice(*PRECISIONS),
    "trainer.gradient_clip_val": Float(0, nullable=True),
    "trainer.log_every_n_steps": Int(1),
    "callbacks.early_stopping.patience": Int(0),
    "callbacks.*.mode": Choice("min", "max"),
    "callbacks.progress_bar.refresh_rate": Int(0),
    # evaluate
    "run_dir": Rule("dir"),
    "gate.min": Float(nullable=True),
    # rationales
    "data_dir": Rule("dir"),
    "source": Choice("teacher", "template"),
    "max_examples": Int(1, nullable=True),
    "filters.min_words": Int(0),
    "filters.max_words": Int(1),
    "filters.require_labels": Choice("all", "any", "none"),
    "teacher.concurrency": Int(1),
    "teacher.max_retries": Int(0),
    "teacher.timeout": Float(0, open=True),
    "teacher.max_requests": Int(0),
    "teacher.temperature": Float(0, 2),
    "teacher.max_tokens": Int(1),
    "template.run_dir": Rule("dir", nullable=True),
    "template.top_words": Int(1),
}


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys of the config's leaves (lists are leaves), without resolving anything."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}{key}.") if not str(key).startswith("_") else ()
    else:
        yield prefix.removesuffix(".")


def _value(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(value, resolve=True) \
        if isinstance(value, DictConfig | ListConfig) else value


def problems(cfg: DictConfig) -> list[str]:
    """Every value of `cfg` its rule refuses, as `key=value: expected ...`."""
    found = []
    raw = OmegaConf.to_container(cfg, resolve=False)
    for key in _leaves({k: v for k, v in raw.items() if k != "hydra"}):
        rule = next((r for pattern, r in RULES.items() if fnmatch.fnmatchcase(key, pattern)
                     and pattern.count(".") == key.count(".")), None)
        if rule is None:
            continue
        try:
            value = _value(cfg, key)
        except OmegaConfBaseException as e:
            if "hydra:" not in str(raw_value(raw, key)):  # a run's path: Hydra resolves it
                found.append(f"{key}: {str(e).splitlines()[0]}")
            continue
        if rule.accepts(value):
            continue
        if rule.kind == "dir" and isinstance(value, str):
            found.append(f"{key}={value}: no such directory")
        else:
            found.append(f"{key}={'null' if value is None else value}: expected "
                         f"{rule.allowed()}")
    found += _between_keys(cfg)
    return found


def raw_value(raw: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def _between_keys(cfg: DictConfig) -> list[str]:
    found = []
    source = OmegaConf.select(cfg, "data.source", default=None)
    fractions = [source.get(k) for k in ("val_fraction", "test_fraction")] if source else []
    if all(isinstance(f, int | float) and not isinstance(f, bool) for f in fractions) and \
            fractions and sum(fractions) >= 1:
        found.append(f"data.source.val_fraction={fractions[0]} and test_fraction="
                     f"{fractions[1]} leave no training split: their sum must stay below 1")
    for key in ("backbone.model", "backbone.tokenizer"):
        source = OmegaConf.select(cfg, key, default=None)
        if isinstance(source, str) and not Path(source).expanduser().is_dir():
            from emotion_lab.models.backbones import looks_like_path

            if looks_like_path(source):
                found.append(f"{key}={source}: no such directory; give a folder with "
                             f"config.json and weights, or a hub id such as org/name")
    head = OmegaConf.select(cfg, "model.head", default=None) or {}
    if head.get("layer_mix") == "concat" and head.get("layers", "last") in (None, "last"):
        found.append("model.head.layer_mix=concat joins several layers, and model.head.layers="
                     "last reads one: set model.head.layers=all (or a list of indices)")
    metric = cfg.get("optimized_metric")
    if isinstance(metric, str) and not metric.startswith("val/"):
        found.append(f"optimized_metric={metric}: expected a validation metric (val/...): "
                     f"checkpoints, early stopping and sweeps must never choose on test")
    return found


def check(cfg: DictConfig) -> None:
    """Refuse the composed config if any value breaks its rule (ConfigError, one line)."""
    found = problems(cfg)
    if found:
        raise ConfigError("; ".join(found) + " (--cfg job prints the composed config)")
