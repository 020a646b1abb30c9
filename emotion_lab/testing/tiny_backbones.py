"""Tiny random backbones of real architectures, saved exactly like a user's hub download.

Tests and offline demos need decoder-only and encoder-decoder backbones without the hub: a
folder with config.json, model.safetensors and tokenizer files that `AutoTokenizer`,
`AutoModel` and `AutoModelForSequenceClassification.from_pretrained(folder)` load (and, for
T5, `T5EncoderModel`). Each folder uses its family's real config class, module names and
weight tying, so LoRA target modules, head discovery and checkpoint key prefixes behave as
with the real model. Its tokenizer, trained here on GoEmotions texts, keeps the real model's
quirks (which special tokens encoding adds, whether there is a pad token), because those
quirks are what break pooling and padding code. Weights are random and seeded: the folders
test plumbing, not accuracy.
"""

from __future__ import annotations

import functools
import json
import lzma
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    T5Config,
    T5ForConditionalGeneration,
    T5Tokenizer,
)

from emotion_lab.data.goemotions import packaged_release
from emotion_lab.models.backbones import no_transformers_bars

FAMILIES: tuple[str, ...] = ("llama", "qwen2", "gpt2", "t5")

# Tokenizers are trained on the first texts of the packaged GoEmotions train split: Reddit
# comments (emoji, [NAME] placeholders, typos), so the pieces look like the task's text.
CORPUS_SIZE = 3000
BPE_VOCAB = 500  # byte-level BPE: the 256 byte symbols + merges, before special tokens
T5_PIECES = 400  # T5's pieces, <pad> </s> <unk> included, before the sentinels
T5_ALPHABET = 100  # characters T5 knows; rarer ones (most emoji) become <unk>, as in t5-small
T5_EXTRA_IDS = 100  # <extra_id_0..99>, the last ids in reverse order, as in t5-small
MAX_POSITIONS = 256  # room for any tokenised GoEmotions comment (~70 tokens at most)

# The pre-tokenisation regexes of Llama 3 (digits in runs of up to three) and of Qwen2
# (single digits), as in their tokenizer.json.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[str, ...]:
    """The first CORPUS_SIZE texts of the packaged GoEmotions train split, read once per
    process (decompressing them is most of a build's file reading)."""
    texts: list[str] = []
    with lzma.open(packaged_release() / "train.tsv.xz", "rt", encoding="utf-8") as handle:
        for line in handle:
            texts.append(line.split("\t", 1)[0])
            if len(texts) == CORPUS_SIZE:
                break
    return tuple(texts)


def _split_then_bytes(regex: str) -> pre_tokenizers.PreTokenizer:
    """Llama 3 / Qwen2 pre-tokenisation: their regex, then bytes mapped to printable symbols."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def _byte_level_bpe(pre_tokenizer: pre_tokenizers.PreTokenizer,
                    normalizer: normalizers.Normalizer | None = None,
                    ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a byte-level BPE trained on the corpus. All 256 byte symbols are in
    the vocabulary, so any text encodes without an unknown token, as with GPT-2, Llama 3 and
    Qwen2. The BPE trainer is deterministic: the same corpus gives the same merges."""
    tokenizer = Tokenizer(BPE())
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    trainer = BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_corpus(), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _gpt2_tokenizer() -> PreTrainedTokenizerBase:
    """GPT-2: bos = eos = unk = <|endoftext|> (the last id), no pad token, and encoding adds
    no special token at all."""
    vocab, merges = _byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False))
    return GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=MAX_POSITIONS)


def _llama_tokenizer() -> PreTrainedTokenizerBase:
    """Llama 3.2: byte-level BPE, <|begin_of_text|> prepended to every encoding and no EOS
    appended, eos <|end_of_text|>, no pad token. A plain fast tokenizer, as on the hub, so
    tokenizer.json (with its BOS template) is loaded as it is."""
    vocab, merges = _byte_level_bpe(_split_then_bytes(LLAMA3_REGEX))
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tokenizer.pre_tokenizer = _split_then_bytes(LLAMA3_REGEX)
    tokenizer.decoder = decoders.ByteLevel()
    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    tokenizer.add_special_tokens([bos, eos])
    tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                      special_tokens=[(bos, tokenizer.token_to_id(bos))]),
    ])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos,
                                   model_max_length=MAX_POSITIONS)


def _qwen2_tokenizer() -> PreTrainedTokenizerBase:
    """Qwen2.5: byte-level BPE (NFC, Qwen's digit-by-digit regex), no BOS and nothing added
    on encoding, eos <|endoftext|> followed by the chat tokens <|im_start|> <|im_end|>."""
    vocab, merges = _byte_level_bpe(_split_then_bytes(QWEN2_REGEX), normalizers.NFC())
    # The real Qwen2.5 tokenizer pads with <|endoftext|>. This one has no pad token (saved as
    # `"pad_token": null`), so that a second family, besides GPT-2, goes through the
    # framework's "add a pad token when there is none" path.
    return Qwen2Tokenizer(vocab=vocab, merges=merges, bos_token=None, unk_token=None,
                          pad_token=None, eos_token="<|endoftext|>",
                          extra_special_tokens=["<|im_start|>", "<|im_end|>"],
                          model_max_length=MAX_POSITIONS)


def _t5_pieces() -> list[tuple[str, float]]:
    """T5's SentencePiece-style vocabulary: (piece, log-probability), <pad> </s> <unk> first.

    The `tokenizers` Unigram trainer gives slightly different scores (and so piece order) in
    every process, whatever the thread count; a build must be reproducible. So the pieces
    come from the deterministic BPE trainer, over T5's own pre-tokenisation, and each piece
    scores the log of its frequency in the corpus's BPE segmentation (pieces only used inside
    merges count half an occurrence). Viterbi over these scores segments text much as the BPE
    did, like a trained Unigram model."""
    specials = ["<pad>", "</s>", "<unk>"]
    bpe = Tokenizer(BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = _t5_pre_tokenizer()
    # The alphabet is chosen here, ties broken by character: the trainer's own
    # `limit_alphabet` breaks ties between equally frequent characters differently each run.
    counts = Counter("".join("".join(text.split()) for text in _corpus()))
    by_frequency = sorted(counts, key=lambda char: (-counts[char], char))
    alphabet = ["▁", *by_frequency[:T5_ALPHABET - 1]]
    trainer = BpeTrainer(vocab_size=T5_PIECES, min_frequency=2, initial_alphabet=alphabet,
                         limit_alphabet=T5_ALPHABET, special_tokens=specials,
                         show_progress=False)
    bpe.train_from_iterator(_corpus(), trainer)
    uses = Counter(i for encoding in bpe.encode_batch(list(_corpus())) for i in encoding.ids)
    total = math.log(sum(uses.values()))
    scored = [(piece, round(math.log(uses.get(i, 0) or 0.5) - total, 6))
              for piece, i in bpe.get_vocab().items() if piece not in specials]
    scored.sort(key=lambda item: (-item[1], item[0]))
    return [(piece, 0.0) for piece in specials] + scored


def _t5_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """T5Tokenizer's: split on whitespace, then "▁" before every word."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])


def _t5_tokenizer() -> PreTrainedTokenizerBase:
    """T5 (t5-small): Unigram with <pad> = 0, </s> = 1, <unk> = 2 (characters it never saw
    become <unk>), </s> appended to every encoding, no BOS, and the 100 <extra_id_*> sentinels
    as the last ids."""
    pieces = _t5_pieces()
    pieces += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_EXTRA_IDS))]
    return T5Tokenizer(vocab=pieces, extra_ids=T5_EXTRA_IDS, model_max_length=512)


def _padded(n: int, multiple: int = 64) -> int:
    """`n` rounded up: Qwen2.5 and T5 have more embedding rows than tokens (151936 for
    151665, 32128 for 32100), which code that sizes things by len(tokenizer) must survive."""
    return -(-n // multiple) * multiple


def _llama_model(tokenizer: PreTrainedTokenizerBase, **sizes: Any) -> PreTrainedModel:
    """Llama 3.2 / SmolLM2 shape: grouped-query attention, SwiGLU, tied embeddings."""
    config = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=None) | sizes
    return LlamaForCausalLM(LlamaConfig(**config))


def _qwen2_model(tokenizer: PreTrainedTokenizerBase, **sizes: Any) -> PreTrainedModel:
    """Qwen2.5-0.5B shape: grouped-query attention with q/k/v biases, tied embeddings.
    bos_token_id is None, as the tokenizer's (Qwen2.5's config.json says <|endoftext|>)."""
    config = dict(
        vocab_size=_padded(len(tokenizer)), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None) | sizes
    return Qwen2ForCausalLM(Qwen2Config(**config))


def _gpt2_model(tokenizer: PreTrainedTokenizerBase, **sizes: Any) -> PreTrainedModel:
    """GPT-2 shape: fused c_attn Conv1D, learned positions, tied embeddings."""
    config = dict(
        vocab_size=len(tokenizer), n_positions=MAX_POSITIONS, n_embd=64, n_layer=2, n_head=4,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=None) | sizes
    return GPT2LMHeadModel(GPT2Config(**config))


def _t5_model(tokenizer: PreTrainedTokenizerBase, **sizes: Any) -> PreTrainedModel:
    """T5 v1.0 (t5-small) shape: ReLU DenseReluDense.wi/wo, relative attention, tied
    embeddings, decoding starts from <pad>."""
    config = dict(
        vocab_size=_padded(len(tokenizer)), d_model=64, d_kv=16, d_ff=128, num_layers=2,
        num_decoder_layers=2, num_heads=4, feed_forward_proj="relu", n_positions=512,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id) | sizes
    return T5ForConditionalGeneration(T5Config(**config))


_Builders = tuple[Callable[[], PreTrainedTokenizerBase],
                  Callable[[PreTrainedTokenizerBase], PreTrainedModel]]
_BUILDERS: dict[str, _Builders] = {
    "llama": (_llama_tokenizer, _llama_model),
    "qwen2": (_qwen2_tokenizer, _qwen2_model),
    "gpt2": (_gpt2_tokenizer, _gpt2_model),
    "t5": (_t5_tokenizer, _t5_model),
}
# What the hub's tokenizer_config.json names, where transformers 5 would write another name:
# Llama 3 says PreTrainedTokenizerFast (transformers 5 saves its new name, TokenizersBackend,
# which transformers 4 cannot load).
_HUB_TOKENIZER_CLASS = {"llama": "PreTrainedTokenizerFast"}


def build_tiny_backbone(family: str, folder: str | Path, seed: int = 0, **sizes: Any) -> Path:
    """Write a tiny random <family> model + tokenizer to `folder`; returns the folder.
    `sizes` override config values (hidden_size=576, num_hidden_layers=30, ...): a random
    model of a real model's shape costs what the real one costs, for speed and memory.

    The same family and seed give the same files (weights and tokenizer); the seed changes
    only the weights. The global torch RNG is left as it was."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown backbone family {family!r}; known: {', '.join(FAMILIES)}")
    make_tokenizer, make_model = _BUILDERS[family]
    folder = Path(folder)
    tokenizer = make_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model(tokenizer, **sizes)
    with no_transformers_bars():
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if family in _HUB_TOKENIZER_CLASS:
        path = folder / "tokenizer_config.json"
        tokenizer_config = json.loads(path.read_text(encoding="utf-8"))
        tokenizer_config["tokenizer_class"] = _HUB_TOKENIZER_CLASS[family]
        path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    """python -m emotion_lab.testing.tiny_backbones <family> <folder> [seed]: a tiny random
    model to try a language-model backbone's code path offline (no accuracy to expect)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] not in FAMILIES:
        print(f"usage: python -m emotion_lab.testing.tiny_backbones "
              f"{{{','.join(FAMILIES)}}} <folder> [seed]", file=sys.stderr)
        return 2
    folder = build_tiny_backbone(args[0], args[1], int(args[2]) if len(args) == 3 else 0)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
