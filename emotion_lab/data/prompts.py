"""Labels as text, for language models that write their answer: the prompt around a text, the
target an example teaches (label names, optionally a rationale before or after them), and
the parser that reads labels and rationale back out of whatever the model wrote.

    prompt  "Which emotions does this comment express?\\nComment: thanks a lot!\\nAnswer:"
    target  " emotions: gratitude, joy\\nreasoning: 'thanks a lot' thanks someone."

The same `PromptFormat` serves the DataModule (targets to train on), the generative model
(where label scoring starts) and evaluation (parsing generated text), so they cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from emotion_lab.data.types import DataError

RATIONALE_PLACES = ("none", "before", "after")


def normalise(word: str) -> str:
    """Case, surrounding punctuation and inner spacing do not matter when matching a label."""
    return re.sub(r"[\s_\-]+", " ", word.strip().strip(".;:!?\"'`()[]").lower()).strip()


@dataclass
class Parsed:
    """What a generated text says: known labels (in the order written), the words that name
    no label, whether a label list was found at all, and the rationale."""

    labels: list[str]
    unknown: list[str]
    found: bool
    rationale: str


@dataclass
class PromptFormat:
    """How examples become text for a language model, and how its answers become labels.

    `verbalizers` maps a label name to the word the model writes for it (IMDb's `neg` ->
    `negative`); labels not listed are written as their names, underscores as spaces.
    `rationale`: none (labels only) | before | after the labels.

    Order: a target lists its labels in label-index order (the data's label order), the
    same every epoch: one answer per label set, so the loss does not spread over the k!
    orders of k labels, and targets and parsing stay deterministic. Its cost, that a label
    is taught to come first or later by its index, matters only to a score read at the
    first position, not to per-label scores (model.scoring). The parser and constrained
    decoding accept any order; the parser keeps the order written. Repeats: a label
    written twice counts once (constrained decoding never writes one twice). Unknown words
    are left out of the labels and reported (`Parsed.unknown`: the unknown-label rate);
    `none_label` beside labels is ignored. An answer is unparseable (`found` false) when
    it names no known label and is not `none_label`."""

    label_names: list[str]
    template: str = "Which emotions does this comment express?\nComment: {text}\nAnswer:"
    labels_prefix: str = " emotions:"
    rationale_prefix: str = " reasoning:"
    separator: str = ","
    none_label: str = "none"
    rationale: str = "none"
    verbalizers: dict[str, str] = field(default_factory=dict)
    max_target_length: int = 96  # answer tokens taught (a rationale is cut to fit)

    def __post_init__(self) -> None:
        if "{text}" not in self.template:
            raise DataError(f"prompt.template={self.template!r} has no {{text}} placeholder; "
                            f"the comment would never reach the model.")
        if self.rationale not in RATIONALE_PLACES:
            raise DataError(f"prompt.rationale={self.rationale!r}: choose one of "
                            f"{', '.join(RATIONALE_PLACES)}.")
        unknown = sorted(set(self.verbalizers) - set(self.label_names))
        if unknown:
            raise DataError(f"prompt.verbalizers names {unknown}, which are not labels of this "
                            f"data ({', '.join(self.label_names)}).")
        self.words = [self.verbalizers.get(n, n.replace("_", " ")) for n in self.label_names]
        self.lookup = {normalise(w): n for w, n in zip(self.words, self.label_names, strict=True)}
        self.lookup |= {normalise(n): n for n in self.label_names}
        clashes = [w for w in self.words if normalise(w) in (normalise(self.none_label), "")]
        if clashes:
            raise DataError(f"label word(s) {clashes} cannot be told from prompt.none_label="
                            f"{self.none_label!r}; set another none_label.")

    @classmethod
    def from_config(cls, config: dict[str, Any], label_names: list[str]) -> PromptFormat:
        return cls(label_names=list(label_names), **dict(config))

    def prompt(self, text: str) -> str:
        return self.template.replace("{text}", text)

    def label_text(self, names: list[str]) -> str:
        """' gratitude, joy': the label list as the model writes it (leading space)."""
        words = [self.words[self.label_names.index(n)] for n in names] or [self.none_label]
        return " " + f"{self.separator} ".join(words)

    def target(self, names: list[str], rationale: str | None = None) -> str:
        """The answer an example teaches: labels, and the rationale where configured."""
        labels = self.labels_prefix + self.label_text(names)
        if self.rationale == "none" or not rationale or not rationale.strip():
            return labels
        reason = f"{self.rationale_prefix} {rationale.strip()}"
        return f"{reason}\n{labels.lstrip()}" if self.rationale == "before" \
            else f"{labels}\n{reason.lstrip()}"

    def label_context(self, generated: str | None = None) -> str:
        """What precedes the label list in an answer: where per-label scoring starts. With the
        rationale before the labels, that is the model's own rationale (from `generated`) and
        the labels prefix; else the labels prefix alone."""
        if self.rationale != "before" or not generated:
            return self.labels_prefix
        found = self.find(self.labels_prefix, generated)
        head = generated[:found.start()].rstrip(" \t") if found else generated.rstrip() + "\n"
        return head + (self.labels_prefix.lstrip() if head.endswith("\n") else self.labels_prefix)

    @staticmethod
    def find(prefix: str, text: str) -> re.Match | None:
        """Where a prefix such as ' emotions:' stands in `text`, any case and spacing: the
        first at the start of a line, else the first after a space (T5's tokenizer drops
        newlines, so its answers run on one line: "reasoning: ... emotions: joy")."""
        word = re.escape(prefix.strip().rstrip(":").strip())
        if not word:  # no prefix configured: the answer is a bare label list
            return None
        return re.search(rf"(?im)^[ \t]*{word}[ \t]*:", text) or \
            re.search(rf"(?i)(?<!\S){word}[ \t]*:", text)

    def _section(self, text: str, prefix: str, other: str) -> str | None:
        """The text after `prefix` up to `other` (or the end); None without the prefix."""
        found = self.find(prefix, text)
        if found is None:
            return None
        rest = text[found.end():]
        stop = self.find(other, rest)
        return rest[:stop.start()] if stop else rest

    def parse(self, generated: str) -> Parsed:
        """Labels and rationale from generated text. Tolerates case, extra spaces, a missing
        labels prefix when the answer is a bare label list, an answer on one line (T5 drops
        newlines), repeats (counted once) and unknown words (reported)."""
        labels, reason = self.labels_prefix, self.rationale_prefix
        section = self._section(generated, labels, reason)
        rationale = self._section(generated, reason, labels)
        if section is None:  # a bare answer ("negative"), up to any reasoning
            stop = self.find(reason, generated)
            section = generated[:stop.start()] if stop else generated
        line = section.strip().split("\n", 1)[0]
        names, unknown = [], []
        for piece in line.split(self.separator.strip() or ","):
            word = normalise(piece)
            if not word or word == normalise(self.none_label):
                continue
            name = self.lookup.get(word)
            if name is None:
                unknown.append(word)
            elif name not in names:
                names.append(name)
        found = bool(names) or normalise(line) == normalise(self.none_label)
        return Parsed(names, unknown, found, (rationale or "").strip())


def mentions(text: str, word: str) -> bool:
    """Whether `text` names `word` as a whole word, any case ('joy' in 'Joy!', not in
    'enjoyed')."""
    pattern = r"\s+".join(re.escape(w) for w in normalise(word).split())
    return re.search(rf"(?<!\w){pattern}(?!\w)", text.lower()) is not None


def truncate_texts(tokenizer, texts: list[str], max_length: int) -> list[str]:
    """Texts cut to `max_length` tokens before a prompt goes around them (cutting the prompt
    instead would cut its question); texts that fit are returned as they are."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(i[:max_length]) if len(i) > max_length else t
            for t, i in zip(texts, ids, strict=True)]
