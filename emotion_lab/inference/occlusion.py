"""Occlusion importance: which words of a text make a run predict an emotion.

Each word is occluded in turn (removed, or replaced by the mask token); its importance for an
emotion is the probability with the whole text minus the probability without the word:
positive when the word supports the emotion. Words are what the text's reader sees, so
subword pieces never appear apart and special tokens never appear at all. Stopwords
(scikit-learn's English list, negations kept) are not scored. The text and all its occluded
variants go through the model in one batch.

Used by `python -m emotion_lab.explain` (files and bar charts) and by the service's
POST /explain (the demo page highlights words with it).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from emotion_lab.errors import OcclusionError
from emotion_lab.inference.predictor import EmotionClassifier

# Negations flip an emotion ("not happy"); scikit-learn's list would hide them.
NEGATIONS = {"no", "not", "nor", "never", "nothing", "none", "nobody", "nowhere", "cannot"}
STOPWORDS = frozenset(ENGLISH_STOP_WORDS) - NEGATIONS
# placeholders such as GoEmotions' [NAME] are one word; then words with apostrophes; then
# each punctuation mark
WORD = re.compile(r"\[[A-Z]+\]|\w+(?:['’]\w+)*|[^\w\s]")
OCCLUSIONS = ("remove", "mask")



def words_of(text: str, keep_stopwords: bool = False) -> list[tuple[str, int, int]]:
    """(word, start, end) for each word and punctuation mark worth scoring."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)
            if keep_stopwords or m.group().lower() not in STOPWORDS]


def check_emotions(clf: EmotionClassifier, emotions: list[str]) -> list[str]:
    unknown = [e for e in emotions if e not in clf.labels]
    if unknown:
        raise OcclusionError(f"unknown emotion(s) {', '.join(unknown)}; this run's labels "
                             f"are: {', '.join(clf.labels)}")
    return emotions


def predicted(clf: EmotionClassifier, probs: np.ndarray) -> list[str]:
    """Emotions above their thresholds (the arg-max class for single-label runs, and the most
    probable emotion when none passes)."""
    if clf.problem.single_label or clf.thresholds is None or not (probs >= clf.thresholds).any():
        return [clf.labels[int(probs.argmax())]]
    return [clf.labels[j] for j in np.flatnonzero(probs >= clf.thresholds)]


def explain_text(clf: EmotionClassifier, text: str, emotions: list[str] | None = None,
                 occlusion: str = "remove", keep_stopwords: bool = False) -> dict[str, Any]:
    """Word importances of `text` for `emotions` (default: the predicted ones):
    {"text", "occlusion", "probabilities": {label: p}, "predicted": [...],
     "emotions": {emotion: {"probability", "words": [{"word", "start", "end",
     "importance"}]}}}."""
    if not isinstance(text, str) or not text.strip():
        raise OcclusionError("text is empty; give the text to explain")
    text = clf.check_texts([text])[0]
    if occlusion not in OCCLUSIONS:
        raise OcclusionError(f"occlusion={occlusion}: choose remove or mask")
    filler = "" if occlusion == "remove" else clf.tokenizer.mask_token
    if filler is None:
        raise OcclusionError("occlusion=mask: this tokenizer has no mask token; use "
                             "occlusion=remove")
    if emotions:
        check_emotions(clf, emotions)
    words = words_of(text, keep_stopwords)
    variants = [text[:start] + filler + text[end:] for _, start, end in words]
    probs = clf.probabilities([text, *variants], batch_size=1 + len(variants))
    chosen = predicted(clf, probs[0])
    result: dict[str, Any] = {
        "text": text, "occlusion": occlusion,
        "probabilities": dict(zip(clf.labels, map(float, probs[0]), strict=True)),
        "predicted": chosen, "emotions": {}}
    for emotion in emotions or chosen:
        j = clf.labels.index(emotion)
        result["emotions"][emotion] = {
            "probability": float(probs[0, j]),
            "words": [{"word": w, "start": s, "end": e, "importance": float(probs[0, j] - p)}
                      for (w, s, e), p in zip(words, probs[1:, j], strict=True)]}
    return result
