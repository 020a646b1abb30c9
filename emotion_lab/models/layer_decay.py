"""Layer-wise learning-rate decay (`model.layer_lr_decay`): the head trains at the recipe's
learning rate, the last encoder layer at lr x decay, the one below at lr x decay^2, down to the
embeddings. Lower layers hold the general features pretraining paid for; smaller steps there
keep more of them (Howard & Ruder, 2018; Clark et al., 2020 for ELECTRA, whose recipe is 0.8).
"""

from __future__ import annotations

import re
from collections import defaultdict

import torch
from torch import nn

# `encoder.layer.3.` (BERT), `layers.3.` (Llama, Qwen), `h.3.` (GPT-2), `block.3.` (T5)
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")
_EMBEDDINGS = re.compile(r"embed|(?:^|\.)(?:wte|wpe|shared)\.")


def depth_of(name: str) -> int | None:
    """0 for the embeddings, i + 1 for numbered layer i, None for the rest (head, pooler,
    final norm), which train at the full rate."""
    numbered = _LAYER.search(name)
    if numbered:
        return int(numbered.group(1)) + 1
    return 0 if _EMBEDDINGS.search(name) else None


def layer_groups(model: nn.Module, decay: float) -> list[dict]:
    """Trainable parameters in groups by depth, each with `lr_scale` = decay^(steps below the
    top); the optimizer's groups take lr x lr_scale."""
    by_depth: dict[int | None, list[torch.nn.Parameter]] = defaultdict(list)
    for name, param in model.named_parameters():
        if param.requires_grad:
            by_depth[depth_of(name)].append(param)
    top = max((d for d in by_depth if d is not None), default=0) + 1
    return [{"params": params, "lr_scale": decay ** (top - (top if d is None else d))}
            for d, params in sorted(by_depth.items(), key=lambda kv: top if kv[0] is None
                                    else kv[0])]
