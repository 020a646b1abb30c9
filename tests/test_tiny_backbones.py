"""Tiny random Llama / Qwen2 / GPT-2 / T5 folders load like hub downloads, with the real
tokenizers' quirks, and are reproducible from their seed."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    T5EncoderModel,
)

from emotion_lab.testing.tiny_backbones import FAMILIES, build_tiny_backbone

TEXT = "I love this, thank you!"
DECODERS = ("llama", "qwen2", "gpt2")
# The real models' special tokens: (bos, eos, pad).
SPECIAL_TOKENS = {
    "llama": ("<|begin_of_text|>", "<|end_of_text|>", None),
    "qwen2": (None, "<|endoftext|>", None),
    "gpt2": ("<|endoftext|>", "<|endoftext|>", None),
    "t5": (None, "</s>", "<pad>"),
}
# Linear layers every family must have under their real names (LoRA targets them by name).
MODULE_NAMES = {
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "gpt2": {"c_attn", "c_proj", "c_fc"},
    "t5": {"q", "k", "v", "o", "wi", "wo"},
}
HEAD_PREFIX = {"llama": "score.", "qwen2": "score.", "gpt2": "score.",
               "t5": "classification_head."}


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_keeps_the_real_quirks(family: str, tmp_path) -> None:
    folder = build_tiny_backbone(family, tmp_path / family)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)

    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == \
        SPECIAL_TOKENS[family]
    # transformers 5's T5Config has no bos_token_id attribute at all (AttributeError).
    assert (getattr(config, "bos_token_id", None), config.eos_token_id, config.pad_token_id) == \
        (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert len(tokenizer) <= config.vocab_size <= 1000

    ids = tokenizer(TEXT)["input_ids"]
    special = set(tokenizer.all_special_ids)
    if family == "llama":  # BOS prepended, no EOS appended
        assert ids[0] == tokenizer.bos_token_id and not special & set(ids[1:])
    elif family == "t5":  # </s> appended, no BOS; <pad> 0, </s> 1, <unk> 2, decode from <pad>
        assert ids[-1] == tokenizer.eos_token_id and not special & set(ids[:-1])
        assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == \
            (0, 1, 2)
        assert config.decoder_start_token_id == 0
        assert tokenizer.unk_token_id in tokenizer("☃")["input_ids"]  # never seen: <unk>
    else:  # GPT-2 and Qwen2 add nothing
        assert not special & set(ids)
    assert tokenizer.decode(ids, skip_special_tokens=True) == TEXT
    if family != "t5":  # byte-level BPE: no text is unknown
        odd = "a {weird} ☃ text 12345"
        assert tokenizer.decode(tokenizer(odd)["input_ids"], skip_special_tokens=True) == odd


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_for_sequence_classification_and_classifies_a_padded_batch(
        family: str, tmp_path) -> None:
    folder = build_tiny_backbone(family, tmp_path / family)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if family in DECODERS:  # what a user does for a decoder without a pad token
        tokenizer.pad_token = tokenizer.eos_token
    model, info = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=3, pad_token_id=tokenizer.pad_token_id, output_loading_info=True)
    # Only the new head is missing; every backbone weight of the checkpoint is used.
    assert info["missing_keys"] and all(k.startswith(HEAD_PREFIX[family])
                                        for k in info["missing_keys"])
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert MODULE_NAMES[family] <= leaves

    batch = tokenizer([TEXT, "meh"], padding=True, return_tensors="pt")
    assert (batch["attention_mask"][1] == 0).any()  # the batch really is padded
    with torch.no_grad():
        logits = model(**batch).logits
        alone = model(**tokenizer(["meh"], return_tensors="pt")).logits
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits[1:], alone, rtol=1e-4, atol=1e-5)  # padding ignored

    base = AutoModel.from_pretrained(folder)
    assert base.config.hidden_size == model.config.hidden_size
    if family == "t5":
        encoder = T5EncoderModel.from_pretrained(folder)
        with torch.no_grad():
            hidden = encoder(**batch).last_hidden_state
        assert hidden.shape == (*batch["input_ids"].shape, encoder.config.d_model)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_files_other_seed_other_weights(family: str, tmp_path) -> None:
    rng_before = torch.get_rng_state()
    folders = [build_tiny_backbone(family, tmp_path / name, seed=seed)
               for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    a, b, c = (load_file(folder / "model.safetensors") for folder in folders)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert sum(t.numel() for t in a.values()) < 1_000_000
    tokenizer_files = {(folder / "tokenizer.json").read_bytes() for folder in folders}
    assert len(tokenizer_files) == 1  # the seed changes the weights, not the tokenizer


def test_unknown_family_names_the_known_ones(tmp_path) -> None:
    with pytest.raises(ValueError, match="llama, qwen2, gpt2, t5"):
        build_tiny_backbone("bert", tmp_path)
