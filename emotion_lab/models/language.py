"""Language models that write their labels: loading, answers and per-label scores, with no
Lightning (the predictor uses them too; models/generative_module.py trains them).

A causal LM (SmolLM2, Llama, Qwen, GPT-2) or a seq2seq LM (T5) learns to continue a prompt
with its answer (data/prompts.py: label names, optionally a rationale); the loss falls on
the answer's tokens only. Evaluation gets two things from it:

- per-label scores, for thresholds, calibration, PR-AUC and the report exactly as for a
  classifier (models/label_scores.py), read off short continuations of the prompt
  (`continuation_logits`: every label of a batch in one pass over the prompt's cached keys
  and values; with the rationale first, after the model's own rationale);
- generated answers (greedy), parsed back into labels and a rationale.

`trainer.max_epochs=0` evaluates the untrained model with the same prompt and parser: the
zero-shot baseline, as a run of its own.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn

from emotion_lab.data.prompts import PromptFormat
from emotion_lab.errors import BackboneError
from emotion_lab.models.backbones import load_backbone


def build_language_model(backbone: dict[str, Any]) -> nn.Module:
    """The backbone with its language-model head (backbone.lm_class), for writing answers."""
    lm_class = backbone.get("lm_class")
    if not lm_class:
        raise BackboneError(
            f"backbone={backbone.get('name')} has no language-model head (backbone.lm_class "
            f"is unset): model=generative needs a decoder or encoder-decoder LM, e.g. "
            f"backbone=smollm2_135m, qwen2_5_0_5b, llama3_2_1b, gpt2 or t5_small.")
    return load_backbone(backbone, get_class(lm_class))


def inner_model(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper. LoRA layers live inside it, so calling it
    applies them; it takes `position_ids` and caches as any transformers model does."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on the first real token of a left-padded row, as in
    training (right-padded, so positions are plain 0..n-1)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _left_join(prefix_ids: torch.Tensor, prefix_mask: torch.Tensor, rows: list[list[int]],
               pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's real prefix tokens followed by its `rows` entry, left-padded again."""
    joined = [prefix_ids[i][prefix_mask[i].bool()].tolist() + r for i, r in enumerate(rows)]
    width = max(len(r) for r in joined)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(joined):
        ids[i, width - len(r):], mask[i, width - len(r):] = torch.tensor(r), 1
    return ids.to(prefix_ids.device), mask.to(prefix_ids.device)


def _gather_label_logprobs(first: torch.Tensor, rest: torch.Tensor, label_ids: torch.Tensor,
                           label_mask: torch.Tensor, batch: int) -> torch.Tensor:
    """Sum of log p(label token j) for every (example, label): `first` (B, V) scores token
    0, `rest` (B*K, T, V) scores tokens 1.. from the logits after token j-1."""
    k, t = label_ids.shape
    first_lp = torch.log_softmax(first.float(), -1)  # (B, V)
    scores = first_lp[:, label_ids[:, 0]]  # (B, K)
    if t > 1:
        lp = torch.log_softmax(rest[:, :-1].float(), -1)  # predicts tokens 1..T-1
        targets = label_ids[:, 1:].repeat(batch, 1)  # (B*K, T-1)
        picked = lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        picked = picked * label_mask[:, 1:].repeat(batch, 1)
        scores = scores + picked.sum(-1).view(batch, k)
    return scores


def continuation_logits(model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                        contexts: list[list[int]], ids: torch.Tensor, mask: torch.Tensor,
                        pad_id: int, decoder_start_id: int | None = None,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of K continuations (`ids`, (K, T), right-padded) of every prompt b and its
    context b: `first` (B, V), the logits before continuation token 0, and `rest`
    (B*K, T, V), row b*K+k's logits after each of its tokens. Gradients flow (training).

    Causal LMs read prompt + context once (left-padded, positions from the mask), then all K
    continuations go on from the cached keys and values, repeated K times. Seq2seq LMs encode
    the prompt once and decode [start] + context + continuation for every k."""
    lm = inner_model(model)
    b, (k, t) = len(contexts), ids.shape
    ids, mask = ids.to(prompt_ids.device), mask.to(prompt_ids.device)
    if lm.config.is_encoder_decoder:
        encoded = lm.get_encoder()(input_ids=prompt_ids, attention_mask=prompt_mask)
        starts = [[decoder_start_id] + c for c in contexts]
        empty = torch.zeros((b, 0), dtype=torch.long, device=prompt_ids.device)
        dec_ids, dec_mask = _left_join(empty, empty, starts, pad_id)
        width = dec_ids.shape[1]
        joined = torch.cat([dec_ids.repeat_interleave(k, 0), ids.repeat(b, 1)], 1)
        joined_mask = torch.cat([dec_mask.repeat_interleave(k, 0), mask.repeat(b, 1)], 1)
        encoded.last_hidden_state = encoded.last_hidden_state.repeat_interleave(k, 0)
        logits = lm(encoder_outputs=encoded, attention_mask=prompt_mask.repeat_interleave(k, 0),
                    decoder_input_ids=joined, decoder_attention_mask=joined_mask).logits
        return logits.view(b, k, *logits.shape[1:])[:, 0, width - 1], logits[:, width:]
    joined, joined_mask = _left_join(prompt_ids, prompt_mask, contexts, pad_id)
    out = lm(input_ids=joined, attention_mask=joined_mask, position_ids=_positions(joined_mask),
             use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)
    next_position = joined_mask.sum(-1, keepdim=True)  # the first continuation's position
    positions = (next_position + torch.arange(t, device=ids.device)).repeat_interleave(k, 0)
    full_mask = torch.cat([joined_mask.repeat_interleave(k, 0), mask.repeat(b, 1)], 1)
    # transformers 5.2x names the argument `cache`; earlier releases `past_key_values`
    name = "cache" if "cache" in inspect.signature(lm.forward).parameters \
        else "past_key_values"
    rest = lm(input_ids=ids.repeat(b, 1), attention_mask=full_mask, position_ids=positions,
              use_cache=False, **{name: cache}).logits
    return out.logits[:, -1], rest


@torch.no_grad()
def label_log_probs(model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                    contexts: list[list[int]], label_ids: torch.Tensor,
                    label_mask: torch.Tensor, pad_id: int,
                    decoder_start_id: int | None = None) -> torch.Tensor:
    """(B, K) log p(label k's tokens | prompt b, context b), teacher-forced."""
    first, rest = continuation_logits(model, prompt_ids, prompt_mask, contexts, label_ids,
                                      label_mask, pad_id, decoder_start_id)
    return _gather_label_logprobs(first, rest, label_ids.to(first.device),
                                  label_mask.to(first.device), len(contexts))


@torch.no_grad()
def generate_answers(model: nn.Module, tokenizer, prompt_ids: torch.Tensor,
                     prompt_mask: torch.Tensor, max_new_tokens: int,
                     constrain_to: PromptFormat | None = None,
                     one_label: bool = False) -> list[str]:
    """Greedy answers to left-padded prompts, decoded without special tokens. With
    `constrain_to`, every answer keeps to that format's grammar (models/answer_grammar.py:
    known labels, each at most once, the separator, the end; `one_label`: exactly one
    label, for single-label tasks), so it always parses."""
    from transformers import LogitsProcessorList

    from emotion_lab.models.answer_grammar import AnswerGrammar

    lm = inner_model(model)
    processors = LogitsProcessorList() if constrain_to is None else LogitsProcessorList(
        [AnswerGrammar.of(tokenizer, constrain_to, one_label).processor(max_new_tokens)])
    config = copy.deepcopy(lm.generation_config)
    # greedy and bounded, whatever sampling settings the checkpoint ships with
    config.update(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                  temperature=None, top_p=None, top_k=None,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    # generate derives position ids from the mask, as label_log_probs does
    out = lm.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=config,
                      logits_processor=processors)
    new = out if lm.config.is_encoder_decoder else out[:, prompt_ids.shape[1]:]
    return tokenizer.batch_decode(new, skip_special_tokens=True)
