"""Per-label scores of generative runs (models/label_scores.py): yes/no scores equal a separate
unpadded computation, do not compete, are taught by training, old runs keep their method, and
contextual calibration flattens a random model's label prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_train_cfg, generative_module_and_batch
from omegaconf import OmegaConf

from emotion_lab.data.prompts import PromptFormat
from emotion_lab.data.types import DataError, Problem
from emotion_lab.models.backbones import load_tokenizer
from emotion_lab.models.label_scores import LabelScores
from emotion_lab.testing.tiny_backbones import build_tiny_backbone

FAMILY = {"smollm2_135m": "llama", "t5_small": "t5", "gpt2": "gpt2"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    return {name: build_tiny_backbone(family, root / family) for name, family in FAMILY.items()}


def module_and_batch(name, folders, data_dir, *overrides, n=6):
    return generative_module_and_batch(name, folders[name], data_dir, *overrides, n=n)


def yes_share(model, prompt: list[int], context: list[int], question: list[int]) -> float:
    """P(yes) / (P(yes) + P(no)) after prompt + context + question, one unpadded pass."""
    lm, (yes, no) = model.model, model.scoring.answers.tolist()
    with torch.no_grad():
        if lm.config.is_encoder_decoder:
            decoder = [lm.config.decoder_start_token_id, *context, *question]
            logits = lm(input_ids=torch.tensor([prompt]),
                        decoder_input_ids=torch.tensor([decoder])).logits[0, -1]
        else:
            logits = lm(input_ids=torch.tensor([prompt + context + question])).logits[0, -1]
    return torch.softmax(logits[[yes, no]].float(), -1)[0].item()


@pytest.mark.parametrize("name", ["smollm2_135m", "gpt2", "t5_small"])
def test_yes_no_scores_equal_a_separate_unpadded_computation(name, folders, goemotions_dir):
    model, batch = module_and_batch(name, folders, goemotions_dir)
    assert model.scoring.method == "yes_no"  # the default for multi-label data
    scores = model.label_scores(batch)
    assert scores.shape == (6, 28) and ((scores > 0) & (scores < 1)).all()
    context = model.tokenizer(model.format.label_context(None),
                              add_special_tokens=False)["input_ids"]
    questions = [q[m.bool()].tolist() for q, m in zip(model.scoring.ids, model.scoring.mask,
                                                       strict=True)]
    for b in (0, 3, 5):
        prompt = batch["prompt_ids"][b][batch["prompt_mask"][b].bool()].tolist()
        for k in (0, 9, 27):
            expected = yes_share(model, prompt, context, questions[k])
            assert scores[b, k].item() == pytest.approx(expected, abs=2e-4), (b, k)


def test_yes_no_scores_do_not_compete_and_first_label_scores_do(folders, goemotions_dir):
    yes_no, batch = module_and_batch("gpt2", folders, goemotions_dir)
    first, _ = module_and_batch("gpt2", folders, goemotions_dir,
                                "model.scoring.method=first_label")
    assert torch.allclose(first.label_scores(batch).sum(-1), torch.ones(6), atol=1e-5)
    # a random model answers yes about half the time for every label: far above a share
    sums = yes_no.label_scores(batch).sum(-1)
    assert (sums > 5).all(), sums


@pytest.mark.slow  # 40 optimiser steps: ~10 s
def test_training_teaches_the_yes_no_answers(folders, goemotions_dir):
    """The training loss includes the yes/no answers, and their gradient reaches the model:
    a few steps on one batch make true labels score higher than false ones."""
    torch.manual_seed(0)
    model, batch = module_and_batch("smollm2_135m", folders, goemotions_dir, n=4)
    model.train()
    labels = batch["labels"].bool()
    before = model.label_scores(batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        raw = model.scoring.raw(model.model, model.tokenizer, model.format, batch["prompt_ids"],
                                batch["prompt_mask"], None)
        model.scoring.loss(raw, batch["labels"]).backward()
        optimizer.step()
    after = model.label_scores(batch)
    gap = lambda s: (s[labels].mean() - s[~labels].mean()).item()  # noqa: E731
    # a random model starts without a gap; a wrong sign or wrong labels would not open one
    assert abs(gap(before)) < 0.01 and gap(after) > 0.015, (gap(before), gap(after))


def test_with_the_rationale_first_the_questions_follow_the_taught_rationale(folders,
                                                                          goemotions_dir):
    model, batch = module_and_batch("gpt2", folders, goemotions_dir, n=2)
    model.format.rationale = "before"
    targets = [model.format.target(["joy"], "it says thanks"), model.format.target([], "flat")]
    ids = model.tokenizer(targets, add_special_tokens=False, padding=True,
                          return_tensors="pt")["input_ids"]
    batch["target_ids"] = ids.masked_fill(ids == model.tokenizer.pad_token_id, -100)
    contexts = [model.format.label_context(t) for t in model.taught_answers(batch)]
    assert contexts == [" reasoning: it says thanks\nemotions:", " reasoning: flat\nemotions:"]


def backbone_of(name, folders, data_dir):
    cfg = compose_train_cfg(data_dir, "/unused", f"backbone={name}",
                            f"backbone.model={folders[name]}", "model=generative")
    return OmegaConf.to_container(cfg, resolve=True)["backbone"]


def test_runs_from_before_scoring_existed_keep_first_label_scores(folders, goemotions_dir):
    from emotion_lab.models.kinds import AnswerScorer
    from emotion_lab.models.language import build_language_model

    backbone = backbone_of("gpt2", folders, goemotions_dir)
    tokenizer = load_tokenizer(backbone)
    model = build_language_model(backbone).eval()
    spec = {"labels": ["joy", "anger", "fear"], "problem_type": "multi_label",
            "backbone": backbone,
            "prompt": {"template": "Text: {text}\nAnswer:"},
            "generation": {"max_new_tokens": 4}}
    old = AnswerScorer(model, tokenizer, spec, torch.device("cpu"))
    probs, _ = old(["so happy", "so mad"], 8, answers=False)
    assert old.scoring.method == "first_label"
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-5)


def test_contextual_calibration_flattens_a_random_models_label_prior(folders, goemotions_dir):
    """A random model leans towards some labels whatever the text; divided by its scores of
    content-free inputs, the lean (the spread of the labels' mean scores over texts)
    shrinks, and a content-free input itself scores alike for every label."""
    content_free = '["N/A","","[MASK]"]'
    for method in ("yes_no", "first_label"):
        plain, batch = module_and_batch("smollm2_135m", folders, goemotions_dir,
                                        f"model.scoring.method={method}", n=16)
        calibrated, _ = module_and_batch(
            "smollm2_135m", folders, goemotions_dir, f"model.scoring.method={method}",
            f"model.scoring.content_free={content_free}", n=16)
        calibrated.scoring.calibrate_to(calibrated.model, calibrated.tokenizer,
                                        calibrated.format, torch.device("cpu"))
        assert calibrated.scoring.reference is not None
        lean = lambda s: torch.logit(s.mean(0).clamp(1e-6, 1 - 1e-6)).std().item()  # noqa: E731
        before = lean(plain.label_scores(batch))
        after = lean(calibrated.label_scores(batch))
        assert after < 0.5 * before, (method, before, after)
        # one content-free input, scored against itself: every label alike
        one = calibrated.scoring
        one.content_free = ["N/A"]
        one.calibrate_to(calibrated.model, calibrated.tokenizer, calibrated.format,
                         torch.device("cpu"))
        tok = calibrated.tokenizer
        tok.padding_side = "left"
        enc = tok([calibrated.format.prompt("N/A")], return_tensors="pt")
        own = one.probabilities(one.raw(calibrated.model, tok, calibrated.format,
                                        enc["input_ids"], enc["attention_mask"], None))
        target = 0.5 if method == "yes_no" else 1 / 28
        torch.testing.assert_close(own, torch.full_like(own, target), atol=1e-4, rtol=0)


@pytest.mark.parametrize(("config", "message"), [
    ({"method": "both"}, "choose one of"),
    ({"question": " is it?"}, "{label}"),
    ({"yes": " yes", "no": " yes"}, "different tokens"),
])
def test_bad_scoring_settings_are_refused_with_what_to_change(config, message, folders,
                                                             goemotions_dir):
    tokenizer = load_tokenizer(backbone_of("gpt2", folders, goemotions_dir))
    with pytest.raises(DataError, match=message):
        LabelScores.build(tokenizer, PromptFormat(["joy", "anger"]), config,
                          Problem("multi_label"))
