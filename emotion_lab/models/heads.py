"""Heads: the classifier built on a backbone, HF's own sequence-classification head or
emotion_lab's pooled head, with its output bias started at the label priors."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from emotion_lab.models.backbones import load_backbone


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
    model = load_backbone(backbone, auto, backbone["head_modules"] if hf_head else (),
                          **(labels if hf_head else {}))
    if hf_head:
        return model, list(backbone["head_modules"])
    classifier = PooledClassifier(model, len(label_names), head["pooling"], head["dropout"],
                                  head.get("hidden_size"))
    return classifier, ["classifier"]
