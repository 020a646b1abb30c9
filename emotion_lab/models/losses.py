"""The classifier's loss (`model.loss`): BCE for multi-label tasks, optionally weighted per
label, or the asymmetric loss of Ridnik et al. (2021); cross-entropy for single-label ones.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own spelling)
from torch import nn

log = logging.getLogger(__name__)

LOSSES = ("bce", "asymmetric")


def pos_weight_from(setting: Any, train_frequencies: list[float] | None,
                    cap: float) -> torch.Tensor | None:
    """BCE pos_weight: None, 'balanced' (negatives/positives per label, capped) or a list."""
    if setting is None:
        return None
    if setting == "balanced":
        if train_frequencies is None:
            raise ValueError("model.loss.pos_weight=balanced needs the training label frequencies.")
        freq = torch.tensor(train_frequencies).clamp(min=1e-6)
        return ((1 - freq) / freq).clamp(max=cap)
    return torch.tensor(list(setting), dtype=torch.float)


class AsymmetricLoss(nn.Module):
    """ASL (Ridnik et al., 2021, "Asymmetric Loss For Multi-Label Classification").

    GoEmotions gives each comment one or two of 28 labels, so the 26 easy negatives of every
    example outweigh its positives in BCE. ASL focuses the negatives harder than the
    positives (gamma_neg > gamma_pos) and shifts their probability down by `clip`, so that a
    negative already scored under `clip` adds nothing. gamma_neg = gamma_pos = clip = 0 is
    BCE exactly. Averaged over examples and labels, as BCEWithLogitsLoss is, so the learning
    rates of a BCE recipe keep their scale.
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 pos_weight: torch.Tensor | None = None, eps: float = 1e-8):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        # positives: log p from logsigmoid, exact for large negative logits
        positive = F.logsigmoid(logits) * (1 - p).pow(self.gamma_pos)
        if self.pos_weight is not None:
            positive = positive * self.pos_weight
        if self.clip > 0:
            p_neg = (p - self.clip).clamp(min=0)
            negative = torch.log((1 - p_neg).clamp(min=self.eps)) * p_neg.pow(self.gamma_neg)
        else:
            negative = F.logsigmoid(-logits) * p.pow(self.gamma_neg)
        return -(target * positive + (1 - target) * negative).mean()


def build_loss(loss: dict[str, Any], single_label: bool,
               train_frequencies: list[float] | None) -> nn.Module:
    """The loss `model.loss` names, for a single- or multi-label task."""
    name = loss.get("name", "bce")  # runs saved before model.loss.name trained with BCE
    if name not in LOSSES:
        raise ValueError(f"model.loss.name={name} is not a loss; use one of {', '.join(LOSSES)}")
    if single_label:
        if loss.get("pos_weight") is not None or name != "bce":
            log.warning("model.loss.pos_weight and model.loss.name apply to multi-label tasks; "
                        "this task is single-label, so it trains with cross-entropy.")
        return nn.CrossEntropyLoss()
    pos_weight = pos_weight_from(loss.get("pos_weight"), train_frequencies,
                                 loss.get("max_pos_weight", 10.0))
    if name == "asymmetric":
        return AsymmetricLoss(loss.get("gamma_neg", 4.0), loss.get("gamma_pos", 0.0),
                              loss.get("clip", 0.05), pos_weight)
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)
