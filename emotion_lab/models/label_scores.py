"""Per-label scores of a language model that writes its labels: what thresholds, temperatures,
PR-AUC and the report read, as they read a classifier's probabilities.

Two methods (`model.scoring.method`), each one pass over the prompt and K short
continuations from its cached keys and values (models/language.continuation_logits):

- `yes_no` (the default for multi-label data): every label is its own question, asked after
  the labels prefix (" emotions: joy?"), and its score is P(" yes") / (P(" yes") + P(" no"))
  there. Training teaches the answers (a binary cross-entropy over the two words, for every
  label of every example, beside the answer's LM loss). Scores do not compete: several
  labels can be likely at once, and each is a probability of its own label, which per-label
  thresholds, temperatures and ECE assume.
- `first_label` (the default for single-label data): the softmax over the labels of each
  label's per-token log-likelihood right after the labels prefix. The scores sum to one, as
  a single-label answer's should; on multi-label data at most one label can pass 0.5, and a
  true label that the target writes second (labels are written in label order) is taught
  not to come first, so its score is pushed down.

Contextual calibration (Zhao et al., 2021, "Calibrate before use"), `scoring.content_free`:
an untrained or few-shot model leans towards some labels whatever the text. Scoring
content-free inputs ("N/A", "", ...) measures that lean, and each score is divided by it
(per label; for yes_no both answers are divided, so a content-free input scores 0.5 for
every label; for first_label the shares are renormalised). Meant for zero- and few-shot
scoring: a trained model's lean is what it learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emotion_lab.data.prompts import PromptFormat
from emotion_lab.data.types import DataError, Problem
from emotion_lab.models.language import _gather_label_logprobs, continuation_logits, inner_model

METHODS = ("auto", "yes_no", "first_label")
DEFAULTS = {"method": "auto", "question": " {label}?", "yes": " yes", "no": " no",
            "weight": 1.0, "content_free": []}


def _right_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r, dtype=torch.long), 1
    return ids, mask


@dataclass
class LabelScores:
    """How a run turns a language model's continuations into per-label scores."""

    method: str
    ids: torch.Tensor  # (K, T) what continues the labels prefix: label words or questions
    mask: torch.Tensor
    answers: torch.Tensor | None  # (2,) token ids of yes and no (yes_no)
    weight: float
    content_free: list[str]
    reference: torch.Tensor | None = None  # content-free scores, set by `calibrate_to`

    @classmethod
    def build(cls, tokenizer, fmt: PromptFormat, config: dict[str, Any] | None,
              problem: Problem) -> LabelScores:
        config = {**DEFAULTS, **(config or {})}
        method = config["method"]
        if method not in METHODS:
            raise DataError(f"model.scoring.method={method}: choose one of {', '.join(METHODS)}")
        if method == "auto":
            method = "first_label" if problem.single_label else "yes_no"
        if method == "first_label":  # each label's word as the answer writes it
            texts, answers = [" " + w for w in fmt.words], None
        else:
            if "{label}" not in config["question"]:
                raise DataError(f"model.scoring.question={config['question']!r} has no "
                                f"{{label}} placeholder; every label would get one question.")
            texts = [config["question"].replace("{label}", w) for w in fmt.words]
            yes, no = (tokenizer(config[k], add_special_tokens=False)["input_ids"][:1]
                       for k in ("yes", "no"))
            if not yes or not no or yes == no:
                raise DataError(f"model.scoring.yes={config['yes']!r} and no={config['no']!r} "
                                f"must begin with different tokens for this tokenizer.")
            answers = torch.tensor(yes + no)
        ids, mask = _right_padded(tokenizer(texts, add_special_tokens=False)["input_ids"],
                                  tokenizer.pad_token_id)
        return cls(method, ids, mask, answers, float(config["weight"]),
                   list(config["content_free"] or []))

    def raw(self, model: nn.Module, tokenizer, fmt: PromptFormat, prompt_ids: torch.Tensor,
            prompt_mask: torch.Tensor, generated: list[str | None] | None) -> torch.Tensor:
        """yes_no: (B, K, 2) log-odds inputs (the yes and no logits); first_label: (B, K)
        per-token log-likelihoods. Gradients flow (training)."""
        if generated is None:  # every row continues the labels prefix: tokenised once
            contexts = tokenizer([fmt.label_context(None)],
                                 add_special_tokens=False)["input_ids"] * len(prompt_ids)
        else:
            contexts = tokenizer([fmt.label_context(g) for g in generated],
                                 add_special_tokens=False)["input_ids"]
        start = getattr(inner_model(model).config, "decoder_start_token_id", None)
        first, rest = continuation_logits(model, prompt_ids, prompt_mask, contexts, self.ids,
                                          self.mask, tokenizer.pad_token_id, start)
        b, (k, _) = len(contexts), self.ids.shape
        mask = self.mask.to(first.device)
        if self.method == "first_label":
            logp = _gather_label_logprobs(first, rest, self.ids.to(first.device), mask, b)
            # per token: summed, a 5-token label starts ~25 nats behind a 1-token one on an
            # untrained model, and its softmax score (1e-14) falls below any threshold
            return logp / mask.sum(-1).to(logp)
        last = (mask.sum(-1) - 1).repeat(b)  # each question's last token, per row
        after = rest[torch.arange(b * k, device=rest.device), last]  # (B*K, V)
        return after[:, self.answers.to(after.device)].float().view(b, k, 2)

    def probabilities(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, K) scores in [0, 1], divided by the content-free reference where one is set."""
        if self.method == "first_label":
            logp = raw if self.reference is None else raw - self.reference
            return torch.softmax(logp, -1)
        logp = torch.log_softmax(raw, -1)
        if self.reference is not None:
            logp = logp - self.reference
        return torch.softmax(logp, -1)[..., 0]

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of the yes/no answers against the multi-hot labels."""
        logit = raw[..., 0] - raw[..., 1]  # log P(yes) - log P(no)
        return F.binary_cross_entropy_with_logits(logit, labels.to(logit))

    @torch.no_grad()
    def calibrate_to(self, model: nn.Module, tokenizer, fmt: PromptFormat,
                     device: torch.device) -> None:
        """Set the reference: the mean content-free log-scores (no-op without content_free)."""
        self.reference = None
        if not self.content_free:
            return
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        enc = tokenizer([fmt.prompt(t) for t in self.content_free], padding=True,
                        return_tensors="pt").to(device)
        tokenizer.padding_side = side
        raw = self.raw(model, tokenizer, fmt, enc["input_ids"], enc["attention_mask"], None)
        # the mean probability over the content-free inputs, as the paper averages them:
        # over the labels (first_label, (K,)) or over yes and no per label (yes_no, (K, 2))
        self.reference = torch.softmax(raw.float(), -1).mean(0).log()
