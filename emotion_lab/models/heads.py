"""Heads: the classifier built on a backbone, HF's own sequence-classification head or
emotion_lab's pooled head, with its output bias started at the label priors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from emotion_lab.models.backbones import load_backbone, load_tokenizer

POOLINGS = ("cls", "mean", "last")
# what emotion_lab's own head pools besides (model.head.pooling): the element-wise max over
# real tokens, and the mean and the max side by side (twice the width)
HEAD_POOLINGS = (*POOLINGS, "max", "mean_max")
# what each backbone family's HF sequence-classification class pools (backbone.hf_head_pooling):
# BERT-style encoders [CLS]; decoders (Llama, Qwen2, GPT-2) the last non-pad token; T5 the
# decoder's state at the last </s>
HF_POOLINGS = ("cls", "last", "eos")


def uses_hf_head(head: dict[str, Any], backbone: dict[str, Any] | None = None) -> bool:
    """HF's own sequence-classification head where the asked pooling is the one it does
    (backbone.hf_head_pooling: cls for encoders, last for decoders, eos for T5) and no extra
    layer of ours is asked; `head.type` = hf or pooled forces one or the other."""
    kind = head.get("type", "auto")
    if kind in ("hf", "pooled"):
        return kind == "hf"
    hf_pooling = (backbone or {}).get("hf_head_pooling", "cls")
    return head["pooling"] == hf_pooling and not head.get("hidden_size") and \
        head.get("layers", "last") == "last"


def hidden_layers(layers: Any, num_layers: int) -> tuple[int, ...] | None:
    """The hidden-state indices model.head.layers names (`all`, or a list of indices,
    negative from the end), 0 (the embeddings' output) to `num_layers` (the last layer's);
    None for `last` (the last_hidden_state, as always). More than `last` is mixed by a
    learned ScalarMix."""
    if layers in (None, "last"):
        return None
    if layers == "all":
        return tuple(range(num_layers + 1))
    if not isinstance(layers, list | tuple) or not layers or not all(
            isinstance(i, int) and not isinstance(i, bool) and -num_layers - 1 <= i <= num_layers
            for i in layers):
        raise ValueError(f"model.head.layers={layers}: expected last, all or a list of hidden-"
                         f"state indices from 0 (the embeddings) to {num_layers} (the last "
                         f"layer), or negative from the end.")
    picked = tuple(i % (num_layers + 1) for i in layers)
    if len(set(picked)) != len(picked):
        raise ValueError(f"model.head.layers={layers}: names a layer twice.")
    return picked


class ScalarMix(nn.Module):
    """ELMo's scalar mix (Peters et al., 2018): gamma * sum_l softmax(w)_l * h_l over
    (batch, layers, width) features. The weights start equal (w = 0), gamma at 1."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mix = torch.softmax(self.weights, dim=0).to(features.dtype)
        return self.gamma * (features * mix[None, :, None]).sum(dim=1)


LAYER_MIXES = ("scalar", "concat")  # model.head.layer_mix


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's last real token, whichever side the padding is on."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


class PooledClassifier(nn.Module):
    """Encoder + pooling (cls, mean or max over real tokens) + `classifier`, for heads HF
    lacks. With `layers` other than last, every named hidden state is pooled and the
    classifier starts with a ScalarMix of them (so cached (N, layers, width) features feed
    it as they are)."""

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str, dropout: float,
                 hidden_size: int | None = None, layers: Any = "last",
                 layer_mix: str = "scalar"):
        super().__init__()
        if pooling not in HEAD_POOLINGS:
            raise ValueError(f"model.head.pooling={pooling!r}: expected one of {HEAD_POOLINGS} "
                             "(cls: the first token, mean: every real token, last: the last "
                             "real token, for decoders, max: the largest value over real "
                             "tokens, mean_max: mean and max side by side).")
        self.encoder, self.pooling = encoder, pooling
        self.layers = None if layers in (None, "last") else \
            hidden_layers(layers, encoder.config.num_hidden_layers)
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused here; DDP refuses parameters without gradients
        self.config = encoder.config  # PEFT reads model.config
        if layer_mix not in LAYER_MIXES:
            raise ValueError(f"model.head.layer_mix={layer_mix!r}: expected one of {LAYER_MIXES}"
                             " (scalar: a learned weight per layer, concat: side by side).")
        width = encoder.config.hidden_size * (2 if pooling == "mean_max" else 1)
        layers: list[nn.Module] = []
        if self.layers and layer_mix == "concat":
            layers.append(nn.Flatten(start_dim=1))
            width *= len(self.layers)
        elif self.layers:
            layers.append(ScalarMix(len(self.layers)))
        layers.append(nn.Dropout(dropout))
        if hidden_size:
            layers += [nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_size
        self.classifier = nn.Sequential(*layers, nn.Linear(width, num_labels))

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled encoder output the classifier reads (what the feature cache stores):
        (batch, width), or (batch, layers, width) where the head mixes layers."""
        if self.layers is None:
            hidden = self.encoder(input_ids=input_ids,
                                  attention_mask=attention_mask).last_hidden_state
            return self.pool_tokens(hidden, attention_mask)
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              output_hidden_states=True).hidden_states
        return torch.stack([self.pool_tokens(states[i], attention_mask) for i in self.layers],
                           dim=1)

    def pool_tokens(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One layer's (batch, tokens, hidden) states pooled to (batch, width)."""
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":  # a decoder's only token that has read the whole text
            return hidden[torch.arange(len(hidden), device=hidden.device),
                          last_token_index(attention_mask)]
        if self.pooling == "max":
            return self.max_pool(hidden, attention_mask)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if self.pooling == "mean_max":
            return torch.cat([mean, self.max_pool(hidden, attention_mask)], dim=-1)
        return mean

    @staticmethod
    def max_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pad = attention_mask.unsqueeze(-1) == 0
        return hidden.masked_fill(pad, torch.finfo(hidden.dtype).min).amax(dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                **_: Any) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier(self.pool(input_ids,
                                                                         attention_mask)))

    def save_pretrained(self, directory: str | Path) -> None:
        """The encoder as a HF model directory, the head beside it as safetensors."""
        self.encoder.save_pretrained(directory)
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()},
                  Path(directory) / "classifier.safetensors")

    def load_head(self, directory: str | Path) -> None:
        self.classifier.load_state_dict(load_file(Path(directory) / "classifier.safetensors"))


def init_output_bias(model: nn.Module, head_modules: list[str], frequencies: list[float],
                     single_label: bool = False) -> bool:
    """Start the output layer at the label priors: bias = log-odds of each label's training
    frequency (single-label: log of each class's frequency, so softmax gives the priors).
    From a zero bias every label starts at p=0.5, and at fine-tuning learning rates (~1e-4 a
    step) Adam needs thousands of steps to walk 28 biases down to about -3, which left MiniLM
    predicting priors after one epoch. Returns False, changing nothing, where the output
    layer has no bias (the decoders' HF `score` head)."""
    prior = torch.tensor(frequencies, dtype=torch.float).clamp(1e-4, 1 - 1e-4)
    outputs = [m for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and m.out_features == len(frequencies)
               and any(f".{h}." in f".{name}." for h in head_modules)]
    if len(outputs) == 1 and outputs[0].bias is None:
        return False
    if len(outputs) != 1:
        raise ValueError(f"expected one output layer with {len(frequencies)} outputs in the head "
                         f"modules {head_modules}, found {len(outputs)}.")
    with torch.no_grad():
        outputs[0].bias.copy_(torch.log(prior) if single_label
                              else torch.log(prior / (1 - prior)))
    return True


def build_classifier(backbone: dict[str, Any], label_names: list[str], head: dict[str, Any],
                     problem_type: str = "multi_label") -> tuple[nn.Module, list[str]]:
    """The classifier and the names of its head modules (which train under lora/frozen_head)."""
    labels = {"num_labels": len(label_names),
              "id2label": dict(enumerate(label_names)),
              "label2id": {n: i for i, n in enumerate(label_names)},
              # HF's name; it also picks sigmoid or softmax in transformers' pipeline
              "problem_type": f"{problem_type}_classification"}
    hf_head = uses_hf_head(head, backbone)
    if hf_head and head.get("layers", "last") != "last":
        raise ValueError(f"model.head.type=hf reads the last layer only; model.head.layers="
                         f"{head['layers']} needs emotion_lab's head (model.head.type=pooled).")
    if hf_head and head["pooling"] != backbone.get("hf_head_pooling", "cls"):
        raise ValueError(f"model.head.type=hf: {backbone.get('name')}'s HF head pools "
                         f"{backbone.get('hf_head_pooling', 'cls')!r}, not "
                         f"{head['pooling']!r}; use model.head.type=pooled for that pooling.")
    # the classes are facts of the backbone family (T5's own head needs its encoder alone)
    auto = get_class(backbone.get("hf_head_class")
                     or "transformers.AutoModelForSequenceClassification") if hf_head \
        else get_class(backbone.get("encoder_class") or "transformers.AutoModel")
    if hf_head and backbone.get("pad_token"):
        # decoders find the last real token by the pad id, so the config must know the one
        # load_tokenizer gives tokenizers without one (encoders' configs have theirs)
        labels["pad_token_id"] = load_tokenizer(backbone).pad_token_id
    model = load_backbone(backbone, auto, backbone["head_modules"] if hf_head else (),
                          **(labels if hf_head else {}))
    if hf_head:
        return model, list(backbone["head_modules"])
    classifier = PooledClassifier(model, len(label_names), head["pooling"], head["dropout"],
                                  head.get("hidden_size"), head.get("layers", "last"),
                                  head.get("layer_mix", "scalar"))
    return classifier, ["classifier"]
