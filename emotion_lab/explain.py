"""Which words make a run predict an emotion: occlusion importance.

    python -m emotion_lab.explain run_dir=outputs/train/runs/X text="Thanks, this made my day!"
    python -m emotion_lab.explain run_dir=... text="..." emotion=gratitude,joy
    python -m emotion_lab.explain run_dir=... emotion=anger,joy n=5     # batch: test examples

Each word is occluded in turn (removed, or replaced by the mask token with occlusion=mask);
its importance for an emotion is the probability with the whole text minus the probability
without the word (see emotion_lab/inference/occlusion.py, which the service's demo page also uses).
Writes a bar chart PNG per text and emotion and a JSON of the scores into `out` (default
<run_dir>/explanations).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from emotion_lab.cli import parse_key_values, run_face
from emotion_lab.evaluation.figures import plot_word_importance
from emotion_lab.inference.occlusion import (
    OCCLUSIONS,
    OcclusionError,
    check_emotions,
    explain_text,
)
from emotion_lab.inference.predictor import EmotionClassifier
from emotion_lab.rundir import RunDirError, read_json, write_json
from emotion_lab.settings import Choice, Int

DEFAULTS = {"run_dir": None, "text": None, "emotion": None, "n": 3, "out": None,
            "occlusion": "remove", "keep_stopwords": False}
RULES = {"n": Int(1), "occlusion": Choice(*OCCLUSIONS)}
ExplainError = OcclusionError  # what this command raises for a request it cannot explain


class Explainer:
    """A run's classifier (fp32, as the run's arrays were scored) and its run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.clf = EmotionClassifier.from_run(self.run_dir)
        self.model, self.labels, self.thresholds = (self.clf.model, self.clf.labels,
                                                    self.clf.thresholds)

    def check(self, emotions: list[str]) -> list[str]:
        return check_emotions(self.clf, emotions)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return self.clf.probabilities(texts, batch_size=len(texts))

    def explain(self, text: str, emotions: list[str] | None = None,
                occlusion: str = "remove", keep_stopwords: bool = False) -> dict[str, Any]:
        """Word importances of `text` for `emotions` (default: the predicted ones)."""
        return explain_text(self.clf, text, emotions, occlusion, keep_stopwords)


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
    args = parse_key_values(argv, DEFAULTS, rules=RULES)
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
    return run_face(lambda argv: [print(p) for p in run(argv)])


if __name__ == "__main__":
    sys.exit(main())
