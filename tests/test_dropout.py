"""FastDropout: the same inverted dropout as nn.Dropout, with a cheaper mask."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from emotion_lab.models.dropout import FastDropout, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_drops_with_probability_p_and_keeps_the_mean(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(400_000, dtype=dtype)
    y = FastDropout(p).train()(x)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.003)  # 400k draws: sd ~0.0008
    kept = y[y != 0].float()
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-2)
    assert y.float().mean().item() == pytest.approx(1.0, abs=0.01)


def test_eval_mode_is_the_identity_and_gradients_follow_the_mask():
    layer = FastDropout(0.3)
    x = torch.randn(8, 16, requires_grad=True)
    assert layer.eval()(x) is x
    y = layer.train()(x)
    y.sum().backward()
    expected = (y != 0).float() / 0.7
    assert torch.allclose(x.grad, expected)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        FastDropout(1.0)


def test_the_same_seed_draws_the_same_mask():
    x = torch.ones(1000)
    masks = []
    for _ in range(2):
        torch.manual_seed(7)
        masks.append(FastDropout(0.2).train()(x))
    assert torch.equal(*masks)


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_every_dropout_of_backbone_and_lora_is_swapped(adapter):
    cfg = compose_config("backbone=tiny", f"adapter={adapter}")
    module = instantiate(cfg.model, label_names=[f"l{i}" for i in range(5)])
    before = sum(type(m) is nn.Dropout for m in module.model.modules())
    # tiny BERT: embeddings, 3 per layer x 2 layers (attention's p is read by SDPA), HF's
    # head; LoRA adds one for each of query and value per layer
    assert before == (8 if adapter == "full" else 12)
    assert use_fast_dropout(module.model) == before
    assert not any(type(m) is nn.Dropout for m in module.model.modules())
    assert sum(isinstance(m, FastDropout) for m in module.model.modules()) == before
    assert OmegaConf.select(cfg, "model.fast_dropout") is True
