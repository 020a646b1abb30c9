"""Adaptation strategies: given the classifier and its head modules, decide what trains."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _in_head(param_name: str, head_modules: list[str]) -> bool:
    dotted = f".{param_name}"
    return any(f".{name}." in dotted for name in head_modules)


def _check_head_modules(model: nn.Module, head_modules: list[str]) -> None:
    names = [n for n, _ in model.named_parameters()]
    missing = [h for h in head_modules if not any(_in_head(n, [h]) for n in names)]
    if missing:
        top = sorted({n.split(".")[0] for n in names})
        raise ValueError(f"backbone.head_modules names {missing}, which this model does not "
                         f"have; its top-level modules are {top}.")


def upcast_trainable(model: nn.Module) -> int:
    """Trainable parameters in fp32, whatever dtype the backbone loaded in: a frozen bf16 base
    halves weight memory, but AdamW updates on bf16 weights lose small steps. Returns how
    many tensors changed dtype."""
    changed = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            changed += 1
    return changed


def word_embeddings(model: nn.Module) -> nn.Module:
    """The input word-embedding table of a HF model or of emotion_lab's head on one."""
    inner = getattr(model, "encoder", model) if not hasattr(
        model, "get_input_embeddings") else model
    return inner.get_input_embeddings()


@dataclass
class FullFineTuning:
    """Every parameter trains, except the word embeddings when `freeze_word_embeddings`:
    they are half of MiniLM's parameters (30,522 x 384), and with them frozen autograd skips
    their gradient and AdamW their update."""

    name: str = "full"
    saves_adapter = False  # the whole network is saved (models/saving.py)
    freeze_word_embeddings: bool = False

    def apply(self, model: nn.Module, head_modules: list[str], **_: object) -> nn.Module:
        model.requires_grad_(True)
        if self.freeze_word_embeddings:
            word_embeddings(model).requires_grad_(False)
        return model


@dataclass
class FrozenBackbone:
    """The backbone is frozen; only the head modules train. `cache_features`: train the head
    on pooled features computed once (feature_cache.py), where the head is emotion_lab's own."""

    name: str = "frozen_head"
    saves_adapter = False
    cache_features: bool = False
    cache_every_state: bool = False  # one pass serves every pooling and layers (a head search)
    feature_batch_size: int | None = None  # head batches on cached features; None: data's

    def apply(self, model: nn.Module, head_modules: list[str], **_: object) -> nn.Module:
        _check_head_modules(model, head_modules)
        for name, param in model.named_parameters():
            param.requires_grad_(_in_head(name, head_modules))
        return model


@dataclass
class Lora:
    """PEFT LoRA on the backbone's attention (optionally feed-forward) layers; the head trains
    fully. PEFT itself saves only `classifier`/`score` heads, so every head module is listed
    in modules_to_save (DistilBERT's fresh `pre_classifier` would stay random otherwise)."""

    name: str = "lora"
    saves_adapter = True  # only the PEFT adapter and the head are saved (adapter/)
    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    ffn_modules: list[str] = field(default_factory=list)
    train_ffn: bool = False
    # GPT-2's fused Conv1D layers store weights transposed (backbone.lora_fan_in_fan_out)
    fan_in_fan_out: bool = False

    def apply(self, model: nn.Module, head_modules: list[str],
              task_type: str = "SEQ_CLS") -> nn.Module:
        """`task_type`: PEFT's (SEQ_CLS for classifiers; CAUSAL_LM or SEQ_2_SEQ_LM for models
        that write their labels)."""
        from peft import LoraConfig, get_peft_model

        _check_head_modules(model, head_modules)
        targets = list(self.target_modules) + (list(self.ffn_modules) if self.train_ffn else [])
        config = LoraConfig(task_type=task_type, r=self.r, lora_alpha=self.alpha,
                            lora_dropout=self.dropout, target_modules=targets,
                            modules_to_save=list(head_modules),
                            fan_in_fan_out=self.fan_in_fan_out)
        with warnings.catch_warnings():
            # PEFT 0.21 asks transformers 5 for the deprecated `is_gradient_checkpointing`;
            # the FutureWarning is PEFT's to act on, not the user's
            warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is "
                                    r"deprecated", category=FutureWarning)
            return get_peft_model(model, config)
