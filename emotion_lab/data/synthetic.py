"""A synthetic multi-label task that tiny random models learn in a minute on a CPU
(`data=synthetic`): the reference for judging a code path without downloaded weights.

Eight emotions, each cued by its own five words. A text names 1 to 3 emotions (half of them
one, a third two, the rest three); each named emotion gets a clause holding one or two of its
cue words, and one to three filler clauses hold none. Clauses come in random order, inside a
few sentence shapes, with filler words between:

    "the bus was late, and my sister was furious and livid, so we felt terrified."
    -> anger, fear

No label's own name is a cue, no cue word serves two labels, and no filler word is a cue, so
the labels follow from the words alone (a model can reach macro-F1 1.0) but never from one
position or one token: a text's cues are any of 5 words per label, anywhere in it, beside
other labels' cues. The same seed gives the same texts on every machine (Python's `random`,
nothing else), so the task stays fixed whatever a run's own seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from emotion_lab.data.types import DataError, LabelledData, Split

LABELS = ("joy", "anger", "fear", "sadness", "surprise", "disgust", "trust", "anticipation")
CUES = {
    "joy": ("happy", "glad", "delighted", "cheerful", "thrilled"),
    "anger": ("furious", "angry", "livid", "outraged", "mad"),
    "fear": ("scared", "afraid", "terrified", "frightened", "nervous"),
    "sadness": ("sad", "unhappy", "miserable", "heartbroken", "gloomy"),
    "surprise": ("shocked", "amazed", "astonished", "stunned", "startled"),
    "disgust": ("disgusted", "gross", "revolted", "sickened", "nauseated"),
    "trust": ("confident", "reliable", "loyal", "faithful", "honest"),
    "anticipation": ("eager", "impatient", "hopeful", "expectant", "keen"),
}
SUBJECTS = ("i", "we", "she", "he", "they", "my sister", "our team", "the kids", "my friend")
FEELS = ("felt", "seemed", "got", "looked", "became", "grew")
FILLERS = (
    "the bus was late", "it rained all day", "we had pasta for dinner",
    "the meeting ran long", "my phone was on the table", "the shop closed early",
    "the train left at noon", "we watched a movie", "the cat slept on the sofa",
    "the coffee was cold", "he walked to work", "the room was quiet",
    "there was a letter in the box", "the game started at eight", "she read the news",
)
EXAMPLES = {"train": 2400, "val": 300, "test": 300}
LINKS = (", and ", ", ", " and ", ", so ", ", then ", " while ", ". ")


def _clause(rng: random.Random, label: str) -> str:
    words = rng.sample(CUES[label], rng.choice((1, 1, 2)))
    feeling = " and ".join(words)
    return f"{rng.choice(SUBJECTS)} {rng.choice(FEELS)} {feeling}"


def make_example(rng: random.Random, max_labels: int = 3) -> tuple[str, list[str]]:
    """One text and its labels (in LABELS order), drawn from `rng`."""
    count = min(max_labels, rng.choices((1, 2, 3), weights=(0.5, 0.35, 0.15))[0])
    labels = sorted(rng.sample(LABELS, count), key=LABELS.index)
    clauses = [_clause(rng, label) for label in labels]
    clauses += rng.sample(FILLERS, rng.randint(1, 3))
    rng.shuffle(clauses)
    text = clauses[0]
    for clause in clauses[1:]:
        text += rng.choice(LINKS) + clause
    return text + rng.choice((".", ".", "!", "")), labels


@dataclass
class Synthetic:
    """The synthetic emotions (instantiated by Hydra from conf/data/synthetic.yaml):
    `examples` per split, drawn train, val, test in that order from one `random.Random(seed)`
    (so a bigger test split leaves train and val as they were)."""

    examples: dict[str, int] = field(default_factory=lambda: dict(EXAMPLES))
    max_labels: int = 3
    seed: int = 0

    def load(self) -> LabelledData:
        sizes = {name: dict(self.examples).get(name) for name in EXAMPLES}
        bad = {k: v for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int)
               or v < 1}
        if bad or set(dict(self.examples)) - set(EXAMPLES):
            raise DataError(f"data.source.examples={dict(self.examples)}: give train, val and "
                            f"test, each a whole number of at least 1.")
        if self.max_labels not in (1, 2, 3):
            raise DataError(f"data.source.max_labels={self.max_labels}: choose 1, 2 or 3.")
        rng = random.Random(self.seed)
        splits = {}
        for name, size in sizes.items():
            rows = [make_example(rng, self.max_labels) for _ in range(size)]
            labels = np.zeros((size, len(LABELS)), dtype=np.float32)
            for i, (_, names) in enumerate(rows):
                labels[i, [LABELS.index(n) for n in names]] = 1.0
            splits[name] = Split([t for t, _ in rows], labels,
                                 [f"{name}:{i}" for i in range(size)])
        return LabelledData(splits, list(LABELS), "multi_label", f"synthetic:seed={self.seed}",
                            {"generator": "emotion_lab.data.synthetic", "seed": self.seed,
                             "sizes": sizes, "max_labels": self.max_labels})
