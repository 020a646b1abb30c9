"""Decoder and encoder-decoder backbones (Llama/SmolLM2, Qwen2, GPT-2, T5) through the normal
configs, each a tiny random model of the real architecture saved to a folder and loaded with
`backbone=<name> backbone.model=<folder>`, exactly as a user's download would be."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import EMOTIONS, compose_config, compose_train_cfg
from hydra.utils import instantiate
from omegaconf import OmegaConf

from emotion_lab.inference.predictor import EmotionClassifier
from emotion_lab.models.adapters import count_parameters, upcast_trainable
from emotion_lab.models.backbones import BackboneError, load_tokenizer
from emotion_lab.models.heads import PooledClassifier, build_classifier, last_token_index
from emotion_lab.rundir import load_arrays, read_json
from emotion_lab.testing.tiny_backbones import build_tiny_backbone
from emotion_lab.train import train

# backbone config -> tiny architecture that stands in for its weights
BACKBONES = {"smollm2_135m": "llama", "qwen2_5_0_5b": "qwen2", "gpt2": "gpt2", "t5_small": "t5"}
ADAPTERS = ("full", "lora", "frozen_head")
L, R = len(EMOTIONS), 8
TEXTS = ["I love this, thank you!", "ok", "Why would anyone do that? It is awful and so sad."]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    return {name: build_tiny_backbone(family, root / family)
            for name, family in BACKBONES.items()}


def composed(name: str, folder, *overrides: str):
    cfg = compose_config("paths.output_dir=/unused", "paths.sweep_group=null",
                         f"backbone={name}", f"backbone.model={folder}", *overrides)
    return cfg, OmegaConf.to_container(cfg, resolve=True)


def build(name: str, folder, adapter: str, *overrides: str):
    cfg, config = composed(name, folder, f"adapter={adapter}", *overrides)
    model, head_modules = build_classifier(config["backbone"], EMOTIONS, config["model"]["head"])
    config_of = model.config
    return instantiate(cfg.adapter).apply(model, head_modules), config_of, config


def attention_lora(c, family: str) -> int:
    """LoRA parameters on the attention targets of every layer, from the model's config."""
    if family == "t5":  # q and v: d_model -> heads x d_kv, encoder layers only (T5EncoderModel)
        inner = c.num_heads * c.d_kv
        return c.num_layers * 2 * R * (c.d_model + inner)
    h = c.hidden_size
    if family == "gpt2":  # one fused Conv1D c_attn: h -> 3h
        return c.n_layer * R * (h + 3 * h)
    head_dim = getattr(c, "head_dim", None) or h // c.num_attention_heads
    q_out, v_out = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    return c.num_hidden_layers * (R * (h + q_out) + R * (h + v_out))


def head_size(c, family: str) -> int:
    # decoders: HF's `score`, one bias-free linear layer; T5: emotion_lab's mean-pooled head
    return c.d_model * L + L if family == "t5" else c.hidden_size * L


@pytest.mark.parametrize("name", BACKBONES)
def test_exact_trainable_parameters_under_each_adapter(name, folders):
    family = BACKBONES[name]
    full, c, _ = build(name, folders[name], "full")
    trainable, total = count_parameters(full)
    assert trainable == total
    lora, _, _ = build(name, folders[name], "lora")
    assert count_parameters(lora)[0] == attention_lora(c, family) + head_size(c, family)
    assert count_parameters(lora)[1] == total + attention_lora(c, family) + head_size(c, family)
    frozen, _, _ = build(name, folders[name], "frozen_head")
    assert count_parameters(frozen) == (head_size(c, family), total)


def test_gpt2_lora_adapts_the_fused_conv1d_attention(folders):
    model, _, config = build("gpt2", folders["gpt2"], "lora")
    assert config["adapter"]["fan_in_fan_out"] is True
    adapted = [n for n, _ in model.named_modules() if n.endswith("attn.c_attn")]
    assert len(adapted) == 2
    module = model.get_submodule(adapted[0])
    assert module.fan_in_fan_out and module.lora_A["default"].in_features == 64
    ffn, _, _ = build("gpt2", folders["gpt2"], "lora", "adapter.train_ffn=true")
    names = {n for n, p in ffn.named_parameters() if p.requires_grad and "lora_A" in n}
    assert any("mlp.c_proj" in n for n in names) and not any("attn.c_proj" in n for n in names)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("name", BACKBONES)
def test_every_trainable_parameter_gets_a_gradient(name, adapter, folders):
    """A parameter the loss never reaches stops DDP; one that gets a zero gradient never
    learns. LoRA's B starts at zero (so A's first gradient is zero): B is nudged first."""
    model, _, config = build(name, folders[name], adapter)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.02)
    tokenizer = load_tokenizer(config["backbone"])
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    model.train()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.shape == (len(TEXTS), L)
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing


@pytest.mark.parametrize("name", ["smollm2_135m", "gpt2", "qwen2_5_0_5b"])
def test_decoder_tokenizers_get_a_pad_token_and_the_head_finds_the_last_real_one(name, folders):
    _, config = composed(name, folders[name])
    raw = load_tokenizer({**config["backbone"], "pad_token": "eos"})
    assert raw.pad_token == raw.eos_token and raw.pad_token_id is not None
    with pytest.raises(BackboneError, match="has no pad token.*backbone.pad_token=eos"):
        load_tokenizer({**config["backbone"], "pad_token": None})
    model, _, _ = build(name, folders[name], "full")
    model.eval()
    alone = [model(**raw([t], return_tensors="pt")).logits for t in TEXTS]
    # GPT-2's learned absolute positions shift under left padding (transformers numbers
    # positions 0.. from the left edge), which is why every decoder config pads right;
    # rotary positions (Llama, Qwen2) see only distances, so either side gives the same
    for side in ("right",) if name == "gpt2" else ("right", "left"):
        raw.padding_side = side
        batch = raw(TEXTS, padding=True, return_tensors="pt")
        together = model(**batch).logits
        for i, logits in enumerate(alone):
            torch.testing.assert_close(together[i], logits[0], atol=1e-4, rtol=1e-4)


def test_last_token_pooling_reads_the_last_real_token_on_either_side():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 3, 0]
    assert last_token_index(left).tolist() == [3, 3, 3]


@pytest.mark.parametrize("name", ["smollm2_135m", "t5_small"])
def test_pooled_heads_and_hf_heads_are_both_selectable(name, folders):
    pooling = "last" if name != "t5_small" else "mean"
    own, _, _ = build(name, folders[name], "full", "model.head.type=pooled",
                      f"model.head.pooling={pooling}")
    assert isinstance(own, PooledClassifier)
    hf, _, _ = build(name, folders[name], "full", "model.head.type=hf",
                     "model.head.pooling=" + ("last" if name != "t5_small" else "eos"))
    assert not isinstance(hf, PooledClassifier)
    expected = "LlamaForSequenceClassification" if name != "t5_small" \
        else "T5ForSequenceClassification"
    assert type(hf).__name__ == expected
    if name == "t5_small":
        assert type(own.encoder).__name__ == "T5EncoderModel"
    with pytest.raises(ValueError, match="model.head.type=pooled"):
        build(name, folders[name], "full", "model.head.type=hf", "model.head.pooling=cls")


def test_a_bf16_base_trains_fp32_lora_weights(folders):
    model, _, _ = build("smollm2_135m", folders["smollm2_135m"], "lora", "backbone.dtype=bfloat16")
    upcast_trainable(model)
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert dtypes == {torch.float32} and frozen == {torch.bfloat16}
    tokenizer = load_tokenizer(composed("smollm2_135m", folders["smollm2_135m"])[1]["backbone"])
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(**batch).logits
    logits.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(BackboneError, match="backbone.dtype='int8'"):
        build("smollm2_135m", folders["smollm2_135m"], "lora", "backbone.dtype=int8")


def test_gradient_checkpointing_gives_the_same_gradients(goemotions_dir, folders, tmp_path):
    grads = []
    for checkpointing in (False, True):
        cfg = compose_train_cfg(goemotions_dir, tmp_path / str(checkpointing),
                                "backbone=smollm2_135m",
                                f"backbone.model={folders['smollm2_135m']}",
                                f"model.gradient_checkpointing={checkpointing}")
        torch.manual_seed(0)  # the same fresh head both times
        module = instantiate(cfg.model, label_names=EMOTIONS)
        assert module.model.is_activation_checkpointing is checkpointing
        tokenizer = load_tokenizer(OmegaConf.to_container(cfg.backbone, resolve=True))
        batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
        module.train()
        module(batch["input_ids"], batch["attention_mask"]).sum().backward()
        grads.append({n: p.grad.clone() for n, p in module.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("name", BACKBONES)
def test_train_save_reload_predict(name, adapter, folders, goemotions_dir, tmp_path):
    out = tmp_path / "run"
    metrics, _ = train(compose_train_cfg(goemotions_dir, out, f"backbone={name}",
                                         f"backbone.model={folders[name]}", f"adapter={adapter}"))
    for file in ("metrics.json", "per_label.csv", "thresholds.json", "config.yaml",
                 "test_probs.npy", "model/emotion_lab.json"):
        assert (out / file).is_file(), file
    assert metrics["backbone"] == name and metrics["adapter"] == adapter
    clf = EmotionClassifier.from_run(out, precision="fp32")
    texts = read_json(out / "test_texts.json")
    saved, _ = load_arrays(out, "test")
    np.testing.assert_allclose(clf.scores(texts), saved, atol=1e-5)
    assert len(clf.predict(TEXTS[0])[0]["emotions"]) >= 0


@pytest.mark.parametrize(("name", "adapter", "fmt", "extra"), [
    ("smollm2_135m", "lora", "hf", ()),       # LoRA merged into LlamaForSequenceClassification
    ("gpt2", "lora", "hf", ()),               # merged through the fused Conv1D
    ("t5_small", "full", "hf", ("model.head.pooling=eos",)),  # T5ForSequenceClassification
    ("smollm2_135m", "full", "onnx", ()),
])
def test_exports_reproduce_the_run(name, adapter, fmt, extra, folders, goemotions_dir, tmp_path):
    from emotion_lab.export import export_hf, export_onnx

    run = tmp_path / "run"
    train(compose_train_cfg(goemotions_dir, run, f"backbone={name}",
                            f"backbone.model={folders[name]}", f"adapter={adapter}", *extra))
    if fmt == "hf":
        report = export_hf(run, tmp_path / "hf")  # loads it in a transformers pipeline
        assert report["pipeline_max_abs_diff"] < 1e-5
        assert read_json(tmp_path / "hf" / "config.json")["pad_token_id"] is not None
    else:
        report = export_onnx(run, tmp_path / "onnx", quantize=False, evaluate=True, opset=18)
        assert report["max_abs_diff_vs_pytorch"] < 1e-4
        f1 = report["test_macro_f1"]
        assert f1["onnx"] == pytest.approx(f1["pytorch"])


def test_a_bf16_base_outside_bf16_training_is_refused_with_the_fix(folders, goemotions_dir,
                                                                   tmp_path):
    cfg = compose_train_cfg(goemotions_dir, tmp_path / "run", "backbone=smollm2_135m",
                            f"backbone.model={folders['smollm2_135m']}", "adapter=lora",
                            "backbone.dtype=bfloat16", "trainer.precision=32-true")
    with pytest.raises(BackboneError, match="needs trainer.precision=bf16-mixed.*32-true"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()
