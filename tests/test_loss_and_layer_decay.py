"""model.loss.name=asymmetric (Ridnik et al., 2021) and model.layer_lr_decay: the loss
against BCE, the depth each parameter name gets, and both through train(cfg)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emotion_lab.errors import ConfigError
from emotion_lab.models.layer_decay import depth_of, layer_groups
from emotion_lab.models.losses import AsymmetricLoss, build_loss
from emotion_lab.train import train


def _grads(loss_fn, logits, target):
    x = logits.clone().requires_grad_(True)
    value = loss_fn(x, target)
    value.backward()
    return value.detach(), x.grad


def test_asymmetric_loss_without_focusing_or_clip_is_bce():
    torch.manual_seed(0)
    logits, target = torch.randn(8, 5) * 4, (torch.rand(8, 5) > 0.7).float()
    weight = torch.tensor([1.0, 2.0, 3.0, 1.0, 5.0])
    for pos_weight in (None, weight):
        asl_value, asl_grad = _grads(AsymmetricLoss(0, 0, 0, pos_weight), logits, target)
        bce_value, bce_grad = _grads(nn.BCEWithLogitsLoss(pos_weight=pos_weight), logits, target)
        torch.testing.assert_close(asl_value, bce_value)
        torch.testing.assert_close(asl_grad, bce_grad)


def test_asymmetric_loss_drops_easy_negatives_and_keeps_positives():
    asl = AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05)
    # a negative scored 0.02 (under the clip): no loss, no gradient; BCE still pushes it
    easy = torch.logit(torch.tensor([[0.02]]))
    value, grad = _grads(asl, easy, torch.zeros(1, 1))
    assert value == 0 and grad.abs().max() == 0
    assert _grads(nn.BCEWithLogitsLoss(), easy, torch.zeros(1, 1))[1].abs().max() > 0
    # a positive at the same score gets BCE's gradient exactly (gamma_pos = 0)
    pos = _grads(asl, easy, torch.ones(1, 1))[1]
    torch.testing.assert_close(pos, _grads(nn.BCEWithLogitsLoss(), easy, torch.ones(1, 1))[1])
    # a hard negative (0.9) still counts, less than in BCE but not nothing
    hard = torch.logit(torch.tensor([[0.9]]))
    asl_hard = _grads(asl, hard, torch.zeros(1, 1))[1].abs().item()
    bce_hard = _grads(nn.BCEWithLogitsLoss(), hard, torch.zeros(1, 1))[1].abs().item()
    assert 0.1 * bce_hard < asl_hard < bce_hard


def test_build_loss_by_name():
    assert isinstance(build_loss({"name": "asymmetric"}, False, None), AsymmetricLoss)
    assert isinstance(build_loss({}, False, None), nn.BCEWithLogitsLoss)  # runs saved before
    assert isinstance(build_loss({"name": "asymmetric"}, True, None), nn.CrossEntropyLoss)
    with pytest.raises(ValueError, match="model.loss.name=focal is not a loss"):
        build_loss({"name": "focal"}, False, None)


@pytest.mark.parametrize("name, depth", [
    ("model.bert.embeddings.word_embeddings.weight", 0),
    ("model.bert.encoder.layer.0.attention.self.query.weight", 1),
    ("model.base_model.model.bert.encoder.layer.5.output.dense.lora_B.default.weight", 6),
    ("model.bert.pooler.dense.weight", None),
    ("model.classifier.weight", None),
    ("model.model.embed_tokens.weight", 0),           # Llama, Qwen
    ("model.model.layers.11.mlp.up_proj.weight", 12),
    ("model.model.norm.weight", None),
    ("model.transformer.wte.weight", 0),              # GPT-2
    ("model.transformer.h.2.attn.c_attn.weight", 3),
    ("model.shared.weight", 0),                       # T5
    ("model.encoder.block.1.layer.0.SelfAttention.q.weight", 2),
])
def test_depth_of_each_family(name, depth):
    assert depth_of(name) == depth


def test_layer_groups_scale_by_depth():
    model = nn.Module()
    model.embeddings = nn.Linear(2, 2)
    model.layer = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    model.classifier = nn.Linear(2, 2)
    model.layer[0].bias.requires_grad_(False)
    groups = layer_groups(model, 0.5)
    scales = [g["lr_scale"] for g in groups]
    assert scales == [0.5 ** 4, 0.5 ** 3, 0.5 ** 2, 0.5, 1.0]
    assert [len(g["params"]) for g in groups] == [2, 1, 2, 2, 2]  # the frozen bias is left out


def test_asymmetric_loss_and_layer_decay_through_train(make_cfg):
    _, objects = train(make_cfg("model.loss.name=asymmetric", "model.layer_lr_decay=0.5",
                                "adapter=full", "debug=fdr"))
    module = objects["model"]
    assert isinstance(module.loss_fn, AsymmetricLoss) and module.loss_fn.gamma_neg == 4
    optimizer = objects["trainer"].optimizers[0]
    lr = module.hparams.optimizer.keywords["lr"]
    # tiny BERT: embeddings, 2 layers, then pooler + classifier at the full rate
    initial = [g["initial_lr"] for g in optimizer.param_groups]
    assert initial == pytest.approx([lr * 0.5 ** 3, lr * 0.5 ** 2, lr * 0.5, lr])
    trained = sum(len(g["params"]) for g in optimizer.param_groups)
    assert trained == sum(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("override, key", [("model.layer_lr_decay=1.5", "model.layer_lr_decay"),
                                           ("model.loss.name=focal", "model.loss.name")])
def test_bad_settings_are_named(make_cfg, override, key):
    with pytest.raises(ConfigError, match=key):
        train(make_cfg(override, "debug=fdr"))
