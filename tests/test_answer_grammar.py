"""Answers always in the label set (models/answer_grammar.py), the parser's rules for order,
repeats and unknown words (data/prompts.py), and the synthetic task tiny models learn
(data/synthetic.py, conf/data/synthetic.yaml).

The tiny random models write garbage when free: constrained, every answer they write parses
into known labels, none twice, with the rationale nowhere, after or before the labels; free,
they do not (so these tests can fail)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from conftest import compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from emotion_lab.data.prompts import PromptFormat, normalise
from emotion_lab.data.synthetic import CUES, LABELS, Synthetic
from emotion_lab.errors import ConfigError
from emotion_lab.models.answer_grammar import AnswerGrammar, is_constrained
from emotion_lab.models.kinds import Generative
from emotion_lab.models.language import generate_answers
from emotion_lab.settings import problems
from emotion_lab.testing.tiny_backbones import FAMILIES, build_tiny_backbone

TEXTS = ["my sister felt furious and scared", "the bus was late", "we got happy!",
         "they seemed gloomy, then i looked shocked and disgusted"]
PLACES = ("none", "after", "before")


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """{family: (random model, tokenizer with a pad token, padding on the left)}."""
    root, out = tmp_path_factory.mktemp("grammar_lms"), {}
    for family in FAMILIES:
        folder = build_tiny_backbone(family, root / family)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token  # backbone.pad_token: eos
        tokenizer.padding_side = "left"
        auto = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
        out[family] = auto.from_pretrained(folder).eval(), tokenizer
    return out


def answers(lms, family: str, fmt: PromptFormat, constrained: bool, max_new_tokens: int = 24):
    model, tokenizer = lms[family]
    enc = tokenizer([fmt.prompt(t) for t in TEXTS], padding=True, return_tensors="pt")
    return generate_answers(model, tokenizer, enc["input_ids"], enc["attention_mask"],
                            max_new_tokens, fmt if constrained else None)


def written_labels(fmt: PromptFormat, answer: str) -> list[str]:
    """Every piece of the label list as written, repeats kept (the parser drops them)."""
    found = fmt.find(fmt.labels_prefix, answer)
    rest = answer[found.end():] if found else answer
    stop = fmt.find(fmt.rationale_prefix, rest)
    line = (rest[:stop.start()] if stop else rest).strip().split("\n", 1)[0]
    return [normalise(piece) for piece in line.split(fmt.separator)]


# --- constrained decoding on random models ----------------------------------------------------

@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("family", FAMILIES)
def test_constrained_answers_of_a_random_model_always_parse(lms, family, place):
    fmt = PromptFormat(list(LABELS), rationale=place)
    written = answers(lms, family, fmt, constrained=True)
    for answer in written:
        parsed = fmt.parse(answer)
        assert parsed.found and not parsed.unknown, (family, place, answer)
        pieces = written_labels(fmt, answer)
        assert len(pieces) == len(set(pieces)), f"a label written twice: {answer!r}"
        assert set(pieces) <= {*LABELS, "none"}
        if place != "before":  # the labels come first
            assert normalise(answer).startswith("emotions:"), answer


@pytest.mark.parametrize("family", FAMILIES)
def test_free_answers_of_a_random_model_do_not_all_parse(lms, family):
    fmt = PromptFormat(list(LABELS))
    written = answers(lms, family, fmt, constrained=False, max_new_tokens=12)
    parsed = [fmt.parse(a) for a in written]
    assert not all(p.found and not p.unknown for p in parsed), written


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tight_budget_ends_every_answer_on_a_whole_label(lms, family):
    """With just room for the labels, an answer is never cut inside a label, and a rationale
    written first is cut to leave room for them."""
    fmt = PromptFormat(list(LABELS), rationale="before")
    grammar = AnswerGrammar(lms[family][1], fmt)
    assert grammar.shortest <= grammar.reserve  # labels alone, or a rationale cut short
    for budget in (grammar.shortest + 2, grammar.reserve + 6):
        for answer in answers(lms, family, fmt, True, budget):
            parsed = fmt.parse(answer)
            assert parsed.found and not parsed.unknown, (budget, answer)


def test_a_budget_too_small_for_any_answer_is_refused(lms):
    fmt = PromptFormat(list(LABELS))
    grammar = AnswerGrammar(lms["gpt2"][1], fmt)
    with pytest.raises(ConfigError, match="max_new_tokens=2 is too few"):
        grammar.processor(2)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_taught_target_is_an_answer_of_the_grammar(lms, family, place):
    """The targets the DataModule teaches (tokenised whole, as in training) walk the grammar
    token by token: constrained decoding never bans what a trained model learned to write,
    whatever the tokenizer does with ' joy,' or a newline."""
    tokenizer = lms[family][1]
    fmt = PromptFormat(list(LABELS), rationale=place, verbalizers={"trust": "trusting"})
    grammar, rng = AnswerGrammar(tokenizer, fmt), random.Random(0)
    for _ in range(40):
        names = sorted(rng.sample(LABELS, rng.randint(0, 3)), key=LABELS.index)
        target = fmt.target(names, "the words say so" if rng.random() < 0.7 else "")
        ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        row = grammar.new_row()
        for token in ids:
            how, listed = grammar.allowed(row, budget=200)
            assert how == "any" or (token in listed) == (how == "only"), (target, token)
            grammar.advance(row, token)
        assert row.phase in ("done", "free"), target


def test_the_setting_is_on_by_default_saved_with_the_run_and_off_for_older_runs():
    cfg = compose_config("model=generative")
    model = OmegaConf.to_container(cfg.model, resolve=False)
    assert model["generation"]["constrained"] is True
    assert Generative().spec(model)["generation"]["constrained"] is True  # in emotion_lab.json
    assert is_constrained({"constrained": True}) and not is_constrained({"max_new_tokens": 48})
    refused = problems(compose_config("model=generative", "model.generation.constrained=maybe"))
    assert any(p.startswith("model.generation.constrained=maybe") for p in refused), refused


# --- the parser: order, repeats, unknown words, one-line answers --------------------------------

@pytest.mark.parametrize(("answer", "labels", "unknown"), [
    (" emotions: anger, joy", ["anger", "joy"], []),               # kept in the order written
    (" emotions: joy, joy, Joy.", ["joy"], []),                     # a repeat counts once
    (" emotions: joy, bliss, fear, bliss", ["joy", "fear"], ["bliss", "bliss"]),  # reported
    (" emotions: none, joy", ["joy"], []),                          # none beside a label: ignored
])
def test_the_parser_counts_a_repeat_once_and_reports_unknown_words(answer, labels, unknown):
    parsed = PromptFormat(list(LABELS)).parse(answer)
    assert (parsed.labels, parsed.unknown, parsed.found) == (labels, unknown, True)


def test_targets_list_labels_in_label_index_order():
    fmt = PromptFormat(list(LABELS))
    assert fmt.target(["joy", "anger", "trust"]) == " emotions: joy, anger, trust"


@pytest.mark.parametrize(("place", "answer"), [
    ("after", "emotions: joy, fear reasoning: happy and scared"),     # T5 drops newlines
    ("before", "reasoning: happy and scared emotions: joy, fear"),
    ("after", " emotions: joy, fear\nreasoning: happy and scared"),
    ("before", " reasoning: happy and scared\nemotions: joy, fear"),
])
def test_answers_on_one_line_parse_as_answers_on_two(place, answer):
    parsed = PromptFormat(list(LABELS), rationale=place).parse(answer)
    assert (parsed.labels, parsed.rationale) == (["joy", "fear"], "happy and scared")


# --- the synthetic task ------------------------------------------------------------------------

def test_the_synthetic_config_loads_the_promised_task():
    cfg = compose_config("data=synthetic", "backbone=tiny")
    assert problems(cfg) == []
    data = instantiate(cfg.data.source).load()
    assert data.label_names == list(LABELS) and data.problem_type == "multi_label"
    assert {s: len(split) for s, split in data.splits.items()} == \
        {"train": 2400, "val": 300, "test": 300}
    for split in data.splits.values():
        counts = split.labels.sum(axis=1)
        assert counts.min() == 1 and counts.max() == 3
        assert (split.labels.sum(axis=0) > 0).all()  # every label in every split
    train = data.splits["train"]
    counts = np.bincount(train.labels.sum(axis=1).astype(int))[1:]
    assert counts[0] > counts[1] > counts[2] > 0  # mostly one label, some two and three
    for j, label in enumerate(LABELS):  # cued by several of its words, never by its name
        texts = [t for t, row in zip(train.texts, train.labels, strict=True) if row[j]]
        assert not any(re.search(rf"\b{label}\b", t) for t in texts)
        assert sum(any(re.search(rf"\b{w}\b", t) for t in texts) for w in CUES[label]) == 5
        assert all(any(re.search(rf"\b{w}\b", t) for w in CUES[label]) for t in texts)
    again = Synthetic(seed=0).load()
    assert again.splits["test"].texts == data.splits["test"].texts  # seeded: the same task
    assert Synthetic(seed=1).load().splits["test"].texts != data.splits["test"].texts


def test_the_synthetic_task_is_learnable_from_its_words():
    """A bag of words separates it (a tiny network has a ceiling near 1.0 to reach), but no
    single word does: each label has five cues, so its best word alone finds a fraction."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    data = Synthetic().load()
    train, test = data.splits["train"], data.splits["test"]
    words = CountVectorizer(binary=True).fit(train.texts)
    x, x_test = words.transform(train.texts), words.transform(test.texts)
    predicted = np.stack([LogisticRegression(solver="liblinear").fit(x, train.labels[:, j])
                          .predict(x_test) for j in range(len(LABELS))], axis=1)
    assert f1_score(test.labels, predicted, average="macro") > 0.95
    for j, label in enumerate(LABELS):
        best = max(np.asarray(x_test[:, words.vocabulary_[w]].todense()).ravel().mean()
                   for w in CUES[label])
        assert best < 0.5 * test.labels[:, j].mean()
