"""Language models that write their labels (model=generative): the prompt format and its
parser, per-label scores against a separate teacher-forced computation, training on data
with rationales, the zero-shot run, single-label answers with T5, reloading a run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import EMOTIONS, compose_train_cfg, generative_module_and_batch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from emotion_lab.data.goemotions import GoEmotions
from emotion_lab.data.prepared import write_prepared
from emotion_lab.data.prompts import PromptFormat, mentions
from emotion_lab.data.types import DataError, LabelledData, Split
from emotion_lab.evaluation.generation import evaluate_generated, rationale_quality
from emotion_lab.inference import EmotionClassifier
from emotion_lab.models.backbones import BackboneError
from emotion_lab.models.generative_module import GenerativeModule
from emotion_lab.models.language import label_log_probs
from emotion_lab.models.saving import load_model
from emotion_lab.predict import run as predict_face
from emotion_lab.rundir import read_json
from emotion_lab.testing.tiny_backbones import build_tiny_backbone
from emotion_lab.train import train

FAMILY = {"smollm2_135m": "llama", "t5_small": "t5", "gpt2": "gpt2"}
QUICK = ("model=generative", "model.generation.max_new_tokens=12", "data.max_eval_examples=24")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    return {name: build_tiny_backbone(family, root / family) for name, family in FAMILY.items()}


@pytest.fixture(scope="module")
def rationale_dir(goemotions_dir, tmp_path_factory):
    """The fixture as a prepared directory with a rationale column (the last training
    example without one, as when the teacher's answer was rejected)."""
    data = GoEmotions(dir=str(goemotions_dir)).load()
    for name, split in data.splits.items():
        split.rationales = [
            f"the words point to {', '.join(EMOTIONS[j] for j in np.flatnonzero(row))}"
            for row in split.labels]
        if name == "train":
            split.rationales[-1] = ""
    out = tmp_path_factory.mktemp("prepared_rationales")
    write_prepared(out, data, {"problem_type": "multi_label"})
    return out


def fmt(**kwargs) -> PromptFormat:
    return PromptFormat(["gratitude", "joy", "neutral", "love_it"], **kwargs)


# --- the prompt format and the parser -------------------------------------------------------

@pytest.mark.parametrize(("text", "labels", "unknown", "found"), [
    (" emotions: gratitude, joy", ["gratitude", "joy"], [], True),
    ("  Emotions :   JOY ,gratitude.  ", ["joy", "gratitude"], [], True),     # case, spaces
    (" emotions: joy, happiness, joy", ["joy"], ["happiness"], True),         # unknown, repeat
    (" emotions: love it", ["love_it"], [], True),                            # underscores
    ("joy", ["joy"], [], True),                                               # bare answer
    (" emotions: none", [], [], True),
    ("", [], [], False),
    ("::::::", [], [], False),
    (" emotions: wut", [], ["wut"], False),
])
def test_the_parser_reads_labels_from_hand_written_answers(text, labels, unknown, found):
    parsed = fmt().parse(text)
    assert (parsed.labels, parsed.unknown, parsed.found) == (labels, unknown, found)


@pytest.mark.parametrize("place", ["before", "after"])
def test_targets_round_trip_through_the_parser_with_the_rationale_either_side(place):
    f = fmt(rationale=place)
    target = f.target(["joy", "gratitude"], "they say thanks, and the joy shows")
    assert target.index("reasoning") < target.index("emotions") if place == "before" \
        else target.index("emotions") < target.index("reasoning")
    parsed = f.parse(target)
    assert parsed.labels == ["joy", "gratitude"]
    assert parsed.rationale == "they say thanks, and the joy shows"
    # no rationale given: the labels alone, whatever the place
    assert f.target(["joy"], "") == " emotions: joy"


def test_label_scoring_starts_after_the_models_own_rationale():
    f = fmt(rationale="before")
    assert f.label_context(" reasoning: thanks\nemotions: joy") == " reasoning: thanks\nemotions:"
    assert f.label_context(" reasoning: no labels written") == \
        " reasoning: no labels written\nemotions:"
    assert fmt(rationale="after").label_context(" emotions: joy") == " emotions:"


def test_bad_prompt_settings_are_refused_with_what_to_change():
    with pytest.raises(DataError, match="no {text} placeholder"):
        fmt(template="Classify:")
    with pytest.raises(DataError, match="rationale='sideways'"):
        fmt(rationale="sideways")
    with pytest.raises(DataError, match="not labels of this data"):
        fmt(verbalizers={"anger": "mad"})


def test_generated_answers_are_scored_and_unparseable_ones_counted():
    f = fmt(rationale="after")
    labels = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=np.float32)
    answers = [" emotions: gratitude, joy\nreasoning: thanks brings joy and gratitude",
               " emotions: neutral, blah\nreasoning: ",
               "gibberish"]
    metrics, preds, rows = evaluate_generated(answers, labels, f, "test")
    np.testing.assert_array_equal(preds, [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert metrics["test/generated/unparseable_rate"] == pytest.approx(1 / 3)
    assert metrics["test/generated/unknown_label_rate"] == pytest.approx(2 / 5)  # blah, gibberish
    assert metrics["test/generated/micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))
    assert metrics["test/rationale/empty_rate"] == pytest.approx(2 / 3)
    assert metrics["test/rationale/names_predicted_rate"] == 1.0
    assert rationale_quality([{"rationale": "so happy", "labels": ["joy"]}], f)[
        "names_predicted_rate"] == 0.0
    assert mentions("Joy!", "joy") and not mentions("enjoyed it", "joy")


# --- per-label scores -----------------------------------------------------------------------

def module_and_batch(name, folders, goemotions_dir, *overrides):
    return generative_module_and_batch(name, folders[name], goemotions_dir, *overrides)


def teacher_forced(model: GenerativeModule, prompt: list[int], context: list[int],
                   label: list[int]) -> float:
    """log p(label | prompt, context) from one unpadded forward pass, no cache."""
    lm = model.model
    with torch.no_grad():
        if lm.config.is_encoder_decoder:
            decoder = [model.decoder_start_id, *context, *label]
            logits = lm(input_ids=torch.tensor([prompt]),
                        decoder_input_ids=torch.tensor([decoder])).logits[0]
            offset = 1 + len(context)
        else:
            logits = lm(input_ids=torch.tensor([prompt + context + label])).logits[0]
            offset = len(prompt) + len(context)
    logp = torch.log_softmax(logits.float(), -1)
    return sum(logp[offset + j - 1, t].item() for j, t in enumerate(label))


@pytest.mark.parametrize(("name", "rationale"), [
    ("smollm2_135m", "none"), ("smollm2_135m", "before"), ("gpt2", "none"),
    ("t5_small", "none"), ("t5_small", "before")])
def test_first_label_scores_equal_a_separate_teacher_forced_computation(name, rationale, folders,
                                                                  goemotions_dir,
                                                                  rationale_dir):
    model, batch = module_and_batch(name, folders, rationale_dir if rationale != "none"
                                    else goemotions_dir, f"model.prompt.rationale={rationale}",
                                    "model.scoring.method=first_label")
    generated = [" reasoning: thanks\nemotions: joy", " reasoning: x", None, "", "joy"] \
        if rationale == "before" else None
    contexts = model.contexts(generated, 5)
    logp = label_log_probs(model.model, batch["prompt_ids"], batch["prompt_mask"], contexts,
                           model.scoring.ids, model.scoring.mask, model.tokenizer.pad_token_id,
                           model.decoder_start_id)
    assert logp.shape == (5, len(EMOTIONS))
    words = model.tokenizer([" " + w for w in model.format.words],
                            add_special_tokens=False)["input_ids"]
    for b in range(5):
        prompt = batch["prompt_ids"][b][batch["prompt_mask"][b].bool()].tolist()
        for k in (0, 7, 27):  # several labels, of several token lengths
            expected = teacher_forced(model, prompt, contexts[b], words[k])
            assert logp[b, k].item() == pytest.approx(expected, abs=2e-4), (b, k)
    scores = model.label_scores(batch, generated)
    lengths = torch.tensor([len(w) for w in words], dtype=logp.dtype)
    torch.testing.assert_close(scores, torch.softmax(logp / lengths, -1))


# --- training, zero-shot, reloading ---------------------------------------------------------

def test_lora_training_with_rationales_writes_a_complete_run_that_reloads(folders,
                                                                         rationale_dir,
                                                                         tmp_path):
    out = tmp_path / "run"
    metrics, objects = train(compose_train_cfg(
        rationale_dir, out, "backbone=smollm2_135m", f"backbone.model={folders['smollm2_135m']}",
        "adapter=lora", "model.prompt.rationale=after", *QUICK))
    assert metrics["model"] == "generative" and metrics["epochs"] == 1
    for file in ("metrics.json", "per_label.csv", "thresholds.json", "val_probs.npy",
                 "test_answers.jsonl", "test_generated_preds.npy", "confusion_test.png",
                 "confusion_test_generated.png", "model/emotion_lab.json",
                 "model/adapter/adapter_config.json"):
        assert (out / file).is_file(), file
    for key in ("test/macro_f1", "test/macro_pr_auc", "test/generated/macro_f1",
                "test/generated/unparseable_rate", "test/rationale/empty_rate",
                "test/ekman/macro_f1"):
        assert 0 <= metrics[key] <= 1, key
    rows = [json.loads(line) for line in (out / "test_answers.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and {"generated", "labels", "rationale"} <= rows[0].keys()
    # the saved model reproduces the run's test scores (to float noise: these batches are
    # padded differently from the run's, and CI saw differences of 3e-5)
    model, _, spec = load_model(out / "model")
    assert spec["kind"] == "generative" and spec["prompt"]["rationale"] == "after"
    module = objects["model"].eval()
    batch = objects["datamodule"].test_dataloader().collate_fn(list(range(4)))
    torch.testing.assert_close(module.label_scores(batch), torch.from_numpy(
        np.load(out / "test_probs.npy")[:4]), atol=1e-4, rtol=1e-3)
    module.model = model
    torch.testing.assert_close(module.label_scores(batch), torch.from_numpy(
        np.load(out / "test_probs.npy")[:4]), atol=1e-4, rtol=1e-3)
    # the predictor: the run's scores, what the model wrote, and its rationale
    clf = EmotionClassifier.from_run(out)
    assert clf.kind.name == "generative"
    texts = read_json(out / "test_texts.json")[:4]
    np.testing.assert_allclose(clf.scores(texts), np.load(out / "test_probs.npy")[:4],
                               atol=1e-4)
    results = clf.predict(texts, all_scores=True)
    assert [r["answer"] for r in results] == [r["generated"].strip() for r in rows[:4]]
    assert all({"emotions", "scores", "written", "rationale"} <= r.keys() for r in results)
    # predict writes the rationale column
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    predict_face([f"run_dir={out}", f"input={tmp_path / 'in.csv'}",
                  f"output={tmp_path / 'out.csv'}"])
    table = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert {"emotions", "rationale", "answer"} <= set(table.columns)
    assert table["answer"].tolist() == [r["answer"] for r in results]
    # the service returns them too
    from fastapi.testclient import TestClient

    from emotion_lab.serve import create_app

    served = TestClient(create_app(clf)).post("/analyze", json={"text": texts[0]}).json()
    assert served["answer"] == results[0]["answer"] and "rationale" in served


def test_the_zero_shot_run_evaluates_the_untrained_model(folders, goemotions_dir, tmp_path):
    name = "smollm2_135m"
    out = tmp_path / "zero"
    metrics, objects = train(compose_train_cfg(
        goemotions_dir, out, f"backbone={name}", f"backbone.model={folders[name]}",
        "adapter=lora", "trainer.max_epochs=0", *QUICK))
    assert metrics["epochs"] == 0 and metrics["global_steps"] == 0
    assert (out / "test_answers.jsonl").is_file() and (out / "model/emotion_lab.json").is_file()
    # LoRA starts as the identity: the run's scores are the base model's
    base, batch = module_and_batch(name, folders, goemotions_dir, "adapter=full")
    test_batch = objects["datamodule"].test_dataloader().collate_fn(list(range(3)))
    torch.testing.assert_close(base.label_scores(test_batch), torch.from_numpy(
        np.load(out / "test_probs.npy")[:3]), atol=1e-4, rtol=1e-3)


def test_t5_writes_single_label_answers_through_verbalizers(folders, tmp_path):
    rng = np.random.default_rng(0)
    words = {"neg": ["awful", "boring", "bad"], "pos": ["great", "lovely", "fun"]}

    def split(n, prefix):
        classes = rng.integers(0, 2, n)
        texts = [f"the film was {rng.choice(words[['neg', 'pos'][c]])} really" for c in classes]
        return Split(texts, np.eye(2, dtype=np.float32)[classes], [f"{prefix}{i}" for i in
                                                                   range(n)])

    data = LabelledData({"train": split(48, "tr"), "val": split(16, "va"),
                         "test": split(16, "te")}, ["neg", "pos"], "single_label")
    write_prepared(tmp_path / "imdb_like", data, {"problem_type": "single_label"})
    metrics, _ = train(compose_train_cfg(
        tmp_path / "imdb_like", tmp_path / "run", "backbone=t5_small",
        f"backbone.model={folders['t5_small']}", "adapter=lora", "data.eval_taxonomies=[]",
        "model.prompt.template='Review: {text} Sentiment:'", "model.prompt.labels_prefix=''",
        "++model.prompt.verbalizers={neg: negative, pos: positive}", *QUICK))
    assert metrics["problem_type"] == "single_label" and metrics["threshold_policy"] == "argmax"
    assert 0 <= metrics["test/generated/accuracy"] <= 1
    probs = np.load(tmp_path / "run/test_probs.npy")
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


def test_encoders_and_adapters_without_a_head_to_train_are_refused(folders, goemotions_dir,
                                                                    tmp_path):
    with pytest.raises(DataError, match="model=generative needs a language-model backbone"):
        train(compose_train_cfg(goemotions_dir, tmp_path / "a", "model=generative"))
    cfg = compose_train_cfg(goemotions_dir, tmp_path / "a", "model=generative")
    with pytest.raises(InstantiationException, match="backbone=tiny has no language-model hea"):
        instantiate(cfg.model, label_names=EMOTIONS, _convert_="object")
    with pytest.raises(BackboneError, match="use adapter=lora or adapter=full"):
        train(compose_train_cfg(goemotions_dir, tmp_path / "b", "backbone=gpt2",
                                f"backbone.model={folders['gpt2']}", "adapter=frozen_head",
                                "model=generative"))


def test_rationales_asked_for_but_missing_say_how_to_add_them(folders, goemotions_dir,
                                                              tmp_path):
    with pytest.raises(DataError, match="python -m emotion_lab.rationales"):
        train(compose_train_cfg(goemotions_dir, tmp_path / "run", "backbone=gpt2",
                                f"backbone.model={folders['gpt2']}",
                                "model.prompt.rationale=before", *QUICK))
