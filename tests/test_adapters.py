"""Exactly which parameters train under each adapter, for tiny random versions of every
backbone config (their head_modules and lora_target_modules are the facts under test)."""

from __future__ import annotations

import json

import pytest
from conftest import EMOTIONS, compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emotion_lab.models.adapters import FrozenBackbone, count_parameters
from emotion_lab.models.backbones import load_tokenizer
from emotion_lab.models.heads import PooledClassifier, build_classifier

L = len(EMOTIONS)
R = 8  # conf/adapter/lora.yaml
TINY_DISTILBERT = ("backbone.random_init={model_type: distilbert, dim: 32, n_layers: 2, "
                   "n_heads: 2, hidden_dim: 64, vocab_size: 30522}")
TINY_ROBERTA = ("backbone.random_init={model_type: roberta, hidden_size: 32, "
                "num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, "
                "vocab_size: 100, max_position_embeddings: 130, pad_token_id: 1, "
                "type_vocab_size: 1}")


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def lora(n_in: int, n_out: int, r: int = R) -> int:
    return r * n_in + n_out * r  # lora_A (r x in) + lora_B (out x r), no bias


def bert_like_encoder(c, *, pooler: bool) -> int:
    """BERT / RoBERTa encoder: embeddings, layers (and the [CLS] pooler)."""
    h, i = c.hidden_size, c.intermediate_size
    embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h
    layer = 4 * linear(h, h) + 2 * h + linear(h, i) + linear(i, h) + 2 * h
    return embeddings + c.num_hidden_layers * layer + (linear(h, h) if pooler else 0)


def distilbert_encoder(c) -> int:
    d = c.dim
    embeddings = (c.vocab_size + c.max_position_embeddings) * d + 2 * d
    layer = 4 * linear(d, d) + 2 * d + linear(d, c.hidden_dim) + linear(c.hidden_dim, d) + 2 * d
    return embeddings + c.n_layers * layer


def build(*overrides: str):
    """(model, head_modules, cfg) for the composed backbone and adapter, adapter applied."""
    cfg = compose_config("paths.output_dir=/unused", "paths.sweep_group=null", *overrides)
    container = OmegaConf.to_container(cfg, resolve=True)
    model, head_modules = build_classifier(container["backbone"], EMOTIONS,
                                           container["model"]["head"])
    config = model.config
    adapted = instantiate(cfg.adapter).apply(model, head_modules)
    return adapted, head_modules, config, cfg


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------- tiny BERT (backbone=tiny)


def test_tiny_full_trains_everything():
    model, _, c, _ = build("backbone=tiny", "adapter=full")
    total = bert_like_encoder(c, pooler=True) + linear(c.hidden_size, L)
    assert count_parameters(model) == (total, total)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_full_with_frozen_word_embeddings(pooling):
    model, _, c, _ = build("backbone=tiny", "adapter=full", f"model.head.pooling={pooling}",
                           "adapter.freeze_word_embeddings=true")
    trainable, total = count_parameters(model)
    assert trainable == total - c.vocab_size * c.hidden_size
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert len(frozen) == 1 and next(iter(frozen)).endswith("word_embeddings.weight")


def test_tiny_frozen_head_trains_only_the_classifier():
    model, heads, c, _ = build("backbone=tiny", "adapter=frozen_head")
    assert heads == ["classifier"]
    total = bert_like_encoder(c, pooler=True) + linear(c.hidden_size, L)
    assert count_parameters(model) == (linear(c.hidden_size, L), total)
    assert trainable_names(model) == {"classifier.weight", "classifier.bias"}


def test_tiny_lora_trains_query_value_adapters_and_the_head():
    model, _, c, cfg = build("backbone=tiny", "adapter=lora")
    assert cfg.adapter.r == R and list(cfg.adapter.target_modules) == ["query", "value"]
    h = c.hidden_size
    adapters = c.num_hidden_layers * 2 * lora(h, h)
    head = linear(h, L)  # PEFT's trainable copy of the classifier
    base = bert_like_encoder(c, pooler=True) + head
    assert count_parameters(model) == (adapters + head, base + adapters + head)
    names = trainable_names(model)
    assert {n for n in names if "lora_" not in n} == {
        "base_model.model.classifier.modules_to_save.default.weight",
        "base_model.model.classifier.modules_to_save.default.bias"}
    assert all(".query." in n or ".value." in n for n in names if "lora_" in n)


def test_lora_train_ffn_adds_the_feed_forward_layers():
    """train_ffn adds intermediate.dense and output.dense to query/value. PEFT matches names
    as suffixes, so for BERT `output.dense` also adapts the attention output projection
    (documented in the README)."""
    model, _, c, _ = build("backbone=tiny", "adapter=lora", "adapter.train_ffn=true")
    adapted = {n.split("encoder.layer.0.")[1].split(".lora_A")[0]
               for n, _ in model.named_parameters() if "layer.0." in n and "lora_A" in n}
    assert adapted == {"attention.self.query", "attention.self.value", "attention.output.dense",
                       "intermediate.dense", "output.dense"}
    h, i = c.hidden_size, c.intermediate_size
    per_layer = 3 * lora(h, h) + lora(h, i) + lora(i, h)
    assert count_parameters(model)[0] == c.num_hidden_layers * per_layer + linear(h, L)


# ---------------------------------------------------------------- DistilBERT facts


def test_distilbert_frozen_head_trains_pre_classifier_and_classifier():
    model, heads, c, _ = build("backbone=distilbert", TINY_DISTILBERT, "adapter=frozen_head")
    assert heads == ["pre_classifier", "classifier"]
    head = linear(c.dim, c.dim) + linear(c.dim, L)
    assert count_parameters(model) == (head, distilbert_encoder(c) + head)
    assert trainable_names(model) == {"pre_classifier.weight", "pre_classifier.bias",
                                      "classifier.weight", "classifier.bias"}


def test_distilbert_full_trains_everything():
    model, _, c, _ = build("backbone=distilbert", TINY_DISTILBERT, "adapter=full")
    total = distilbert_encoder(c) + linear(c.dim, c.dim) + linear(c.dim, L)
    assert count_parameters(model) == (total, total)


def test_distilbert_lora_trains_the_fresh_pre_classifier():
    """The PEFT pitfall: only `classifier` is saved/trained by default; DistilBERT's freshly
    initialised pre_classifier must train too."""
    model, _, c, _ = build("backbone=distilbert", TINY_DISTILBERT, "adapter=lora")
    d = c.dim
    adapters = c.n_layers * 2 * lora(d, d)  # q_lin, v_lin
    head = linear(d, d) + linear(d, L)
    assert count_parameters(model) == (adapters + head, distilbert_encoder(c) + 2 * head
                                       + adapters)
    names = trainable_names(model)
    for module in ("pre_classifier", "classifier"):
        for kind in ("weight", "bias"):
            assert f"base_model.model.{module}.modules_to_save.default.{kind}" in names
    assert all(".q_lin." in n or ".v_lin." in n for n in names if "lora_" in n)
    # listed explicitly, not left to PEFT's loose suffix match ("pre_classifier" happens to
    # end with "classifier" in PEFT 0.21), so it is also saved with the adapter
    assert {"pre_classifier", "classifier"} <= set(model.peft_config["default"].modules_to_save)


# ---------------------------------------------------------------- BERTweet (RoBERTa) facts


def test_bertweet_frozen_head_trains_the_whole_roberta_head():
    model, heads, c, _ = build("backbone=bertweet", TINY_ROBERTA, "adapter=frozen_head")
    assert heads == ["classifier"]
    h = c.hidden_size
    head = linear(h, h) + linear(h, L)  # classifier.dense + classifier.out_proj
    assert count_parameters(model) == (head, bert_like_encoder(c, pooler=False) + head)
    assert trainable_names(model) == {"classifier.dense.weight", "classifier.dense.bias",
                                      "classifier.out_proj.weight", "classifier.out_proj.bias"}


def test_bertweet_lora_trains_adapters_and_the_whole_head():
    model, _, c, _ = build("backbone=bertweet", TINY_ROBERTA, "adapter=lora")
    h = c.hidden_size
    adapters = c.num_hidden_layers * 2 * lora(h, h)
    head = linear(h, h) + linear(h, L)
    assert count_parameters(model) == (adapters + head,
                                       bert_like_encoder(c, pooler=False) + 2 * head + adapters)
    assert {n for n in trainable_names(model) if "lora_" not in n} == {
        f"base_model.model.classifier.modules_to_save.default.{p}"
        for p in ("dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias")}


# ---------------------------------------------------------------- heads


def test_unknown_head_module_lists_the_model_modules():
    model, _ = build_classifier(
        OmegaConf.to_container(compose_config("backbone=tiny", "paths.output_dir=/unused",
                                              "paths.sweep_group=null").backbone, resolve=True),
        EMOTIONS, {"pooling": "cls", "dropout": 0.1, "hidden_size": None})
    with pytest.raises(ValueError, match="pre_classifier") as err:
        FrozenBackbone().apply(model, ["pre_classifier"])
    assert "bert" in str(err.value) and "classifier" in str(err.value)


@pytest.mark.parametrize("adapter", ["full", "frozen_head", "lora"])
def test_mean_pooling_builds_our_own_head(adapter):
    model, heads, c, _ = build("backbone=tiny", f"adapter={adapter}", "model.head.pooling=mean")
    assert heads == ["classifier"]
    base = model.get_base_model() if adapter == "lora" else model
    assert isinstance(base, PooledClassifier) and base.pooling == "mean"
    head = linear(c.hidden_size, L)
    trainable, _ = count_parameters(model)
    # our own head drops the unused BERT pooler
    expected = {"full": bert_like_encoder(c, pooler=False) + head, "frozen_head": head,
                "lora": c.num_hidden_layers * 2 * lora(c.hidden_size, c.hidden_size) + head}
    assert trainable == expected[adapter]


@pytest.mark.parametrize("adapter", ["full", "frozen_head", "lora"])
@pytest.mark.parametrize("head", ["model.head.pooling=cls", "model.head.pooling=mean",
                                  "model.head.hidden_size=16"])
def test_every_trainable_parameter_gets_a_gradient(adapter, head):
    """A trainable parameter the loss never reaches makes DDP stop with 'parameters that were
    not used in producing the loss' (trainer=ddp)."""
    import torch

    model, _, c, _ = build("backbone=tiny", f"adapter={adapter}", head)
    input_ids = torch.randint(1000, 2000, (3, 7))
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
    logits.sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_hidden_layer_head_builds_our_own_head():
    model, heads, c, _ = build("backbone=tiny", "adapter=frozen_head",
                               "model.head.hidden_size=16")
    assert isinstance(model, PooledClassifier) and model.pooling == "cls"
    assert count_parameters(model)[0] == linear(c.hidden_size, 16) + linear(16, L)


def test_unknown_pooling_is_rejected():
    with pytest.raises(ValueError, match="pooling"):
        build("backbone=tiny", "model.head.pooling=median")  # max is a pooling now


# ---------------------------------------------------------------- BERTweet tokenizer


def write_bertweet_vocab(directory, words: list[str]) -> None:
    """vocab.txt (`token count`) and bpe.codes (`left right count`) that BPE-merge each word
    into a single token, in fastBPE's format as vinai/bertweet-base ships it."""
    directory.mkdir(parents=True, exist_ok=True)
    merges: list[tuple[str, str]] = []
    for word in words:
        symbols = [*word[:-1], word[-1] + "</w>"]
        current = symbols[0]
        for symbol in symbols[1:]:
            if (current, symbol) not in merges:
                merges.append((current, symbol))
            current += symbol
    (directory / "vocab.txt").write_text("".join(f"{w} 1\n" for w in words), encoding="utf-8")
    (directory / "bpe.codes").write_text("".join(f"{a} {b} 1\n" for a, b in merges),
                                         encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertweetTokenizer"}), encoding="utf-8")


TWEET_WORDS = ["@USER", "HTTPURL", "hello", "love", "it", ":grinning_face:"]
TWEET = "@someone hello http://example.com/x 😀"


@pytest.fixture
def bertweet_backbone(tmp_path):
    pytest.importorskip("emoji")
    write_bertweet_vocab(tmp_path / "bertweet", TWEET_WORDS)
    backbone = OmegaConf.to_container(
        compose_config("backbone=bertweet", "paths.output_dir=/unused",
                       "paths.sweep_group=null").backbone, resolve=True)
    assert backbone["tokenizer_kwargs"] == {"use_fast": False, "normalization": True}
    return {**backbone, "tokenizer": str(tmp_path / "bertweet")}


def test_bertweet_tokenizer_normalises_tweets(bertweet_backbone):
    tokenizer = load_tokenizer(bertweet_backbone)
    assert type(tokenizer).__name__ == "BertweetTokenizer"
    assert tokenizer.tokenize(TWEET) == ["@USER", "hello", "HTTPURL", ":grinning_face:"]
    ids = tokenizer(TWEET)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["<s>", "@USER", "hello", "HTTPURL",
                                                    ":grinning_face:", "</s>"]
    assert tokenizer.unk_token_id not in ids


def test_bertweet_tokenizer_survives_the_run_directory(bertweet_backbone, tmp_path):
    """save_model() writes the tokenizer into model/; load_model() must read back one that
    tokenises exactly as the one used in training."""
    from emotion_lab.models.saving import load_model, save_model

    tokenizer = load_tokenizer(bertweet_backbone)
    backbone = OmegaConf.to_container(
        compose_config("backbone=bertweet", TINY_ROBERTA, "paths.output_dir=/unused",
                       "paths.sweep_group=null").backbone, resolve=True)
    head = {"pooling": "cls", "dropout": 0.1, "hidden_size": None}
    model, _ = build_classifier(backbone, EMOTIONS, head)
    spec = {"kind": "classifier", "adapter": "full", "head": head, "labels": EMOTIONS,
            "problem_type": "multi_label", "temperatures": None, "backbone": backbone}
    save_model(tmp_path / "model", model, tokenizer, spec, saves_adapter=False)
    _, reloaded, _ = load_model(tmp_path / "model")
    assert reloaded.tokenize(TWEET) == tokenizer.tokenize(TWEET)


# ---------------------------------------------------------------- output bias at the priors


@pytest.mark.parametrize("overrides", [
    ("backbone=tiny",),
    ("backbone=tiny", "model.head.pooling=mean"),
    ("backbone=distilbert", TINY_DISTILBERT),
    ("backbone=bertweet", TINY_ROBERTA),
])
def test_output_bias_starts_at_the_label_log_odds(overrides):
    import torch

    from emotion_lab.models.heads import init_output_bias

    cfg = compose_config("paths.output_dir=/unused", "paths.sweep_group=null", *overrides)
    container = OmegaConf.to_container(cfg, resolve=True)
    model, heads = build_classifier(container["backbone"], EMOTIONS, container["model"]["head"])
    freq = [0.02 + 0.01 * i for i in range(len(EMOTIONS))]
    init_output_bias(model, heads, freq)
    outputs = [m for _, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and m.out_features == L]
    assert len(outputs) == 1
    assert torch.allclose(torch.sigmoid(outputs[0].bias), torch.tensor(freq), atol=1e-6)


def test_output_bias_needs_one_output_layer():
    from emotion_lab.models.heads import init_output_bias

    model, _, _, _ = build("backbone=tiny", "adapter=full")
    with pytest.raises(ValueError, match="one output layer"):
        init_output_bias(model, ["bert"], [0.1] * len(EMOTIONS))
