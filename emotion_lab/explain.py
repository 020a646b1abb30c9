"""Which words make a run predict an emotion: occlusion importance.

    python -m emotion_lab.explain run_dir=outputs/train/runs/X text="Thanks, this made my day!"
    python -m emotion_lab.explain run_dir=... text="..." emotion=gratitude,joy
    python -m emotion_lab.explain run_dir=... emotion=anger,joy n=5     # batch: test examples

Each word is occluded in turn (removed, or replaced by the mask token with occlusion=mask);
its importance for an emotion is the probability with the whole text minus the probability
without the word: positive when the word supports the emotion. Words are what the text's
reader sees, so subword pieces never appear apart and special tokens never appear at all.
Stopwords (scikit-learn's English list, negations kept) are not scored. The text and all its
occluded variants go through the model in one batch. Writes a bar chart PNG per text and
emotion and a JSON of the scores into `out` (default <run_dir>/explanations).
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from tqdm.auto import tqdm

from emotion_lab.cli import CliError, parse_key_values, run_main
from emotion_lab.evaluation.figures import plot_word_importance
from emotion_lab.predictor import predict_probs
from emotion_lab.rundir import RunDirError, load_model, read_json, write_json

log = logging.getLogger(__name__)

# Negations flip an emotion ("not happy"); scikit-learn's list would hide them.
NEGATIONS = {"no", "not", "nor", "never", "nothing", "none", "nobody", "nowhere", "cannot"}
STOPWORDS = frozenset(ENGLISH_STOP_WORDS) - NEGATIONS
# placeholders such as GoEmotions' [NAME] are one word; then words with apostrophes; then
# each punctuation mark
WORD = re.compile(r"\[[A-Z]+\]|\w+(?:['’]\w+)*|[^\w\s]")
DEFAULTS = {"run_dir": None, "text": None, "emotion": None, "n": 3, "out": None,
            "occlusion": "remove", "keep_stopwords": False}


class ExplainError(CliError):
    """Bad arguments; the message says what is wrong and what is valid."""


def words_of(text: str, keep_stopwords: bool = False) -> list[tuple[str, int, int]]:
    """(word, start, end) for each word and punctuation mark worth scoring."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)
            if keep_stopwords or m.group().lower() not in STOPWORDS]


class Explainer:
    """A run's model with what it needs to score words: labels, temperatures, thresholds."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        thresholds = read_json(self.run_dir / "thresholds.json")
        self.model, self.tokenizer, self.spec = load_model(self.run_dir / "model")
        self.labels: list[str] = self.spec["labels"]
        self.thresholds = None if None in thresholds.values() else np.array(
            [thresholds[name] for name in self.labels])
        self.max_length = int(self.spec["backbone"].get("max_length") or 128)

    def check(self, emotions: list[str]) -> list[str]:
        unknown = [e for e in emotions if e not in self.labels]
        if unknown:
            raise ExplainError(f"unknown emotion(s) {', '.join(unknown)}; this run's labels "
                               f"are: {', '.join(self.labels)}")
        return emotions

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return predict_probs(self.model, self.tokenizer, texts, self.max_length,
                             batch_size=len(texts),  # one forward pass for them all
                             single_label=self.spec.get("problem_type") == "single_label",
                             temperatures=self.spec.get("temperatures"))

    def predicted(self, probs: np.ndarray) -> list[str]:
        """Emotions above their thresholds (the arg-max class for single-label runs, and the
        most probable emotion when none passes)."""
        if self.thresholds is None or not (probs >= self.thresholds).any():
            return [self.labels[int(probs.argmax())]]
        return [self.labels[j] for j in np.flatnonzero(probs >= self.thresholds)]

    def explain(self, text: str, emotions: list[str] | None = None,
                occlusion: str = "remove", keep_stopwords: bool = False) -> dict[str, Any]:
        """Word importances of `text` for `emotions` (default: the predicted ones)."""
        if not text.strip():
            raise ExplainError("text is empty; give the text to explain: text=\"...\"")
        if occlusion not in ("remove", "mask"):
            raise ExplainError(f"occlusion={occlusion}: choose remove or mask")
        filler = "" if occlusion == "remove" else self.tokenizer.mask_token
        if filler is None:
            raise ExplainError("occlusion=mask: this tokenizer has no mask token; use "
                               "occlusion=remove")
        words = words_of(text, keep_stopwords)
        variants = [text[:start] + filler + text[end:] for _, start, end in words]
        probs = self.probabilities([text, *variants])
        emotions = self.check(emotions) if emotions else self.predicted(probs[0])
        result = {"text": text, "occlusion": occlusion,
                  "probabilities": {name: float(p) for name, p in zip(self.labels, probs[0],
                                                                      strict=True)},
                  "predicted": self.predicted(probs[0]), "emotions": {}}
        for emotion in emotions:
            j = self.labels.index(emotion)
            result["emotions"][emotion] = {
                "probability": float(probs[0, j]),
                "words": [{"word": w, "start": s, "end": e, "importance": float(probs[0, j] - p)}
                          for (w, s, e), p in zip(words, probs[1:, j], strict=True)]}
        return result


def write_explanation(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """A JSON of the scores and one bar chart per emotion."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", result)
    paths = [out / f"{stem}.json"]
    short = result["text"] if len(result["text"]) <= 180 else result["text"][:177] + "..."
    for emotion, scored in result["emotions"].items():
        path = out / f"{stem}_{emotion}.png"
        plot_word_importance([w["word"] for w in scored["words"]],
                             [w["importance"] for w in scored["words"]], path,
                             f"{emotion} (p={scored['probability']:.2f}): \"{short}\"",
                             f"drop in P({emotion}) when the word is occluded (> 0: supports it)")
        paths.append(path)
    return paths


def pick_test_examples(explainer: Explainer, emotion: str, n: int) -> list[int]:
    """The n test examples that carry `emotion` and that the run scored highest for it."""
    run = explainer.run_dir
    texts_file = run / "test_texts.json"
    if not texts_file.is_file():
        raise RunDirError(f"{texts_file}: missing; batch mode explains the run's test texts, "
                          f"which runs trained before test_texts.json existed lack. Use text=.")
    j = explainer.labels.index(emotion)
    probs, labels = np.load(run / "test_probs.npy"), np.load(run / "test_labels.npy")
    carrying = np.flatnonzero(labels[:, j] == 1)
    return [int(i) for i in carrying[np.argsort(-probs[carrying, j])][:n]]


def run(argv: list[str]) -> list[Path]:
    args = parse_key_values(argv, DEFAULTS)
    explainer = Explainer(args["run_dir"])
    out = Path(args["out"] or explainer.run_dir / "explanations")
    emotions = explainer.check(args["emotion"].split(",")) if args["emotion"] else None
    options = {"occlusion": args["occlusion"], "keep_stopwords": args["keep_stopwords"]}
    if args["text"] is not None:
        return write_explanation(explainer.explain(args["text"], emotions, **options), out,
                                 "text")
    if not emotions:
        raise ExplainError("give text=\"...\", or emotion=<names> for batch mode over the "
                           "run's test examples")
    texts = read_json(explainer.run_dir / "test_texts.json")
    jobs: dict[int, list[str]] = {}  # one pass per text, even when several emotions chose it
    for emotion in emotions:
        for i in pick_test_examples(explainer, emotion, args["n"]):
            jobs.setdefault(i, []).append(emotion)
    written = []
    for i, chosen in tqdm(jobs.items(), desc="explaining", unit="text"):
        result = explainer.explain(texts[i], chosen, **options)
        written += write_explanation(result | {"test_index": i}, out, f"test{i}")
    return written


def main() -> int:
    return run_main(lambda argv: [print(p) for p in run(argv)])


if __name__ == "__main__":
    sys.exit(main())
