"""A trained model's folder (<run>/model/): written at the end of training, loaded by
everything that applies a run, with nothing else needed.

    emotion_lab.json  the model spec (rundir.write_spec): kind, backbone, head, adapter,
                      labels, problem type, temperatures, and the run format
    full/frozen_head: a HF model directory (config.json, model.safetensors); emotion_lab's
                      own head adds classifier.safetensors
    lora:             adapter/ (PEFT adapter + trained head); the base comes from the
                      backbone source recorded in the spec
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from emotion_lab.errors import RunDirError
from emotion_lab.models.backbones import load_tokenizer, no_transformers_bars
from emotion_lab.models.kinds import KINDS, kind_of
from emotion_lab.rundir import check_temperatures, read_spec, require, write_spec

SPEC_KEYS = ("kind", "labels", "problem_type", "backbone")  # what every kind loads from
KIND_KEYS = {"classifier": ("head",), "generative": ("prompt", "generation")}


def save_model(model_dir: Path, model: nn.Module, tokenizer, spec: dict[str, Any],
               saves_adapter: bool) -> None:
    """Weights, tokenizer and spec. `saves_adapter`: the adapter strategy trains a PEFT
    adapter, saved alone (adapter/); otherwise the whole network is saved and the folder
    becomes the backbone, so rebuilding needs no hub and no package."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(model_dir)
    # transformers 5's BertweetTokenizer rewrites bpe.codes in a form its own loader misreads
    # (merges lost); the original vocabulary files are what it was trained with anyway.
    for attr, name in getattr(tokenizer, "vocab_files_names", {}).items():
        source = getattr(tokenizer, attr, None)
        if isinstance(source, str) and Path(source).is_file():
            shutil.copyfile(source, model_dir / name)
    spec = {**spec, "backbone": dict(spec["backbone"])}
    with no_transformers_bars():
        model.save_pretrained(model_dir / "adapter" if saves_adapter else model_dir)
    if not saves_adapter:
        spec["backbone"].update(model=".", tokenizer=".", local_package=None, random_init=None)
    write_spec(model_dir, spec)


def load_model(model_dir: str | Path, merge: bool = False) -> tuple[nn.Module, Any, dict]:
    """(model in eval mode, tokenizer, spec) from a run's model/ folder. `merge`: fold a
    LoRA adapter into the backbone's weights (same scores, no low-rank matmuls per layer)."""
    model_dir = Path(model_dir)
    spec = read_model_spec(model_dir)
    backbone = dict(spec["backbone"])
    for key in ("model", "tokenizer"):
        if backbone.get(key) == ".":
            backbone[key] = str(model_dir)
    spec["backbone"] = backbone
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    # Rebuilding reports the head (or pooler) as freshly initialised before the trained
    # weights are loaded into it below: true, expected, and alarming to read; hidden.
    hf_logging.set_verbosity_error()
    try:
        model = kind_of(spec["kind"]).build(spec)
    finally:
        hf_logging.set_verbosity(verbosity)
    if (model_dir / "adapter").is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_dir / "adapter")
        if merge:
            model = model.merge_and_unload()
    elif (model_dir / "classifier.safetensors").is_file():
        model.load_head(model_dir)  # emotion_lab's pooled head over a saved encoder
    tokenizer = load_tokenizer({**backbone, "tokenizer": str(model_dir)})
    # a base trained in bf16 (backbone.dtype) predicts in fp32, as the run's arrays were made
    return model.float().eval(), tokenizer, spec


def read_model_spec(model_dir: str | Path) -> dict[str, Any]:
    """The spec with what loading needs checked, before anything is built: a known kind, the
    keys every kind and this one read, a temperature per label (a RunDirError otherwise)."""
    path = Path(model_dir) / "emotion_lab.json"
    spec = read_spec(model_dir, SPEC_KEYS)
    if spec["kind"] not in KINDS:
        raise RunDirError(f"{path}: kind={spec['kind']!r} is not a kind of model this emotion_lab "
                          f"loads ({', '.join(KINDS)}); use the version that wrote the run.")
    require(spec, KIND_KEYS.get(spec["kind"], ()), path)
    check_temperatures(spec.get("temperatures"), spec["labels"], path)
    return spec
