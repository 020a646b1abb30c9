"""Training memory of each language-model backbone config, computed (no weights needed):
parameter counts exact, from each model's published config built on torch's meta device;
activations estimated for one batch of 32 GoEmotions texts.

    python benchmarks/lm_memory.py     # writes benchmarks/results/lm_memory.json, prints a table

Per configuration (backbone.dtype = the frozen weights' dtype; trainable weights are fp32):
  full           fp32 weights 4 B + gradients 4 B + AdamW moments 8 B per parameter
  lora           frozen base 4 B (fp32) or 2 B (bf16) per parameter, plus 16 B per LoRA
                 parameter (r=8 on q and v), plus the head
  frozen_head    frozen base only (no gradients), plus the head
Activations kept for backward under bf16-mixed, per layer and token (Korthikanti et al.,
2022, adapted to each block's widths): 2 B each for the attention inputs and q, k, v, o, the
feed-forward inputs and its intermediate tensors, 4 B for each norm's fp32 input, and the
attention probabilities (heads x sequence x 2 B); full and lora keep them for every layer,
gradient checkpointing only each layer's input, frozen_head none (forward under no_grad).
The batch: 32 texts padded to 48 tokens (GoEmotions' longest texts in a length-grouped
batch run to ~40-50 tokens under these models' tokenizers). Estimates, not measurements:
benchmarks/lm_speed.py measures peak RSS of a SmolLM2-135M-shaped model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
BATCH, TOKENS, R = 32, 48, 8
GIB = 1024**3

# published configs (config.json of each hub model), the facts that size them
CONFIGS: dict[str, dict[str, Any]] = {
    "smollm2_135m": {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                     "num_hidden_layers": 30, "num_attention_heads": 9,
                     "num_key_value_heads": 3, "vocab_size": 49152,
                     "tie_word_embeddings": True},
    "smollm2_360m": {"model_type": "llama", "hidden_size": 960, "intermediate_size": 2560,
                     "num_hidden_layers": 32, "num_attention_heads": 15,
                     "num_key_value_heads": 5, "vocab_size": 49152,
                     "tie_word_embeddings": True},
    "qwen2_5_0_5b": {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
                     "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True},
    "llama3_2_1b": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
                    "num_hidden_layers": 16, "num_attention_heads": 32,
                    "num_key_value_heads": 8, "vocab_size": 128256, "head_dim": 64,
                    "tie_word_embeddings": True},
    "gpt2": {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
             "vocab_size": 50257, "n_positions": 1024},
    "t5_small": {"model_type": "t5", "d_model": 512, "d_ff": 2048, "num_layers": 6,
                 "num_heads": 8, "d_kv": 64, "vocab_size": 32128,
                 "feed_forward_proj": "relu"},
    "flan_t5_base": {"model_type": "t5", "d_model": 768, "d_ff": 2048, "num_layers": 12,
                     "num_heads": 12, "d_kv": 64, "vocab_size": 32128,
                     "feed_forward_proj": "gated-gelu"},
}


def count(config: dict[str, Any]) -> dict[str, int]:
    """Exact parameters of the classifier emotion_lab builds by default (decoders: HF's
    sequence-classification model; T5: the encoder alone under our mean-pooled head)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, T5EncoderModel

    values = dict(config)
    c = AutoConfig.for_model(values.pop("model_type"), **values, num_labels=28)
    with torch.device("meta"):
        model = T5EncoderModel(c) if c.model_type == "t5" else \
            AutoModelForSequenceClassification.from_config(c)
    total = sum(p.numel() for p in model.parameters())
    head = c.d_model * 28 + 28 if c.model_type == "t5" else c.hidden_size * 28
    return {"params": total + (head if c.model_type == "t5" else 0), "head": head,
            **widths(c)}


def widths(c) -> dict[str, int]:
    if c.model_type == "t5":
        inner = c.num_heads * c.d_kv
        ff = c.d_ff * (2 if c.is_gated_act else 1)
        return {"layers": c.num_layers, "hidden": c.d_model, "q": inner, "kv": inner,
                "ffn": ff, "heads": c.num_heads}
    if c.model_type == "gpt2":
        return {"layers": c.n_layer, "hidden": c.n_embd, "q": c.n_embd, "kv": c.n_embd,
                "ffn": 4 * c.n_embd, "heads": c.n_head}
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return {"layers": c.num_hidden_layers, "hidden": c.hidden_size,
            "q": c.num_attention_heads * head_dim, "kv": c.num_key_value_heads * head_dim,
            "ffn": 2 * c.intermediate_size, "heads": c.num_attention_heads}  # gate and up


def activations(w: dict[str, int], checkpointing: bool) -> float:
    """Bytes kept for backward for one batch (see the module docstring)."""
    tokens = BATCH * TOKENS
    if checkpointing:
        return w["layers"] * tokens * w["hidden"] * 2
    per_token = (2 * (2 * w["hidden"] + w["q"] + 2 * w["kv"] + w["q"])  # attn in, q k v, o in
                 + 2 * (w["hidden"] + 2 * w["ffn"])                     # ffn in, its tensors
                 + 4 * 2 * w["hidden"]                                  # two norms, fp32
                 + 2 * w["heads"] * TOKENS)                             # attention probs
    return w["layers"] * tokens * per_token


def lora_params(w: dict[str, int]) -> int:
    return w["layers"] * (R * (w["hidden"] + w["q"]) + R * (w["hidden"] + w["kv"]))


def table() -> list[dict[str, Any]]:
    rows = []
    for name, config in CONFIGS.items():
        n = count(config)
        p, lora = n["params"], lora_params(n)
        act, act_ckpt = activations(n, False), activations(n, True)
        rows.append({
            "backbone": name, "params": p, "lora_params": lora,
            "full_fp32_gib": (16 * p + act) / GIB,
            "full_fp32_checkpointing_gib": (16 * p + act_ckpt) / GIB,
            "lora_fp32_base_gib": (4 * p + 16 * (lora + n["head"]) + act) / GIB,
            "lora_bf16_base_gib": (2 * p + 16 * (lora + n["head"]) + act) / GIB,
            "lora_bf16_base_checkpointing_gib": (2 * p + 16 * (lora + n["head"]) + act_ckpt)
            / GIB,
            "frozen_head_bf16_base_gib": (2 * p + 16 * n["head"]) / GIB,
            "activations_gib": act / GIB})
    return rows


def main() -> int:
    rows = table()
    out = ROOT / "benchmarks/results/lm_memory.json"
    out.write_text(json.dumps({"batch": BATCH, "tokens": TOKENS, "lora_r": R, "rows": rows},
                              indent=2) + "\n")
    print("| backbone | parameters | full, fp32 | full + checkpointing | LoRA, fp32 base | "
          "LoRA, bf16 base | LoRA, bf16 base + checkpointing | frozen head, bf16 base |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['backbone']} | {r['params'] / 1e6:,.0f}M | {r['full_fp32_gib']:.1f} | "
              f"{r['full_fp32_checkpointing_gib']:.1f} | {r['lora_fp32_base_gib']:.1f} | "
              f"{r['lora_bf16_base_gib']:.1f} | {r['lora_bf16_base_checkpointing_gib']:.1f} | "
              f"{r['frozen_head_bf16_base_gib']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
