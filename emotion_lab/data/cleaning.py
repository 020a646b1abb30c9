"""Cleaning rules. Each is off by default and each is counted, per split, in the report.

Rules, in the order they run:
- `min_chars` / `min_words`: drop texts shorter than N characters (after stripping) or N
  words (whitespace-separated; prepare runs without a tokenizer, so words, not subwords).
- `drop_url_only`: drop texts that are nothing but URLs (http://, https://, www.) and
  punctuation.
- `drop_spam`: drop spam-like texts: three or more URLs, or at least 6 words of which one
  word (case-insensitive) makes up more than half ("buy buy buy buy buy buy").
- `dedupe`: drop exact duplicate texts within a split, keeping the first. Duplicates are
  always counted (`found.duplicates`, and how many of them disagree on labels).
- `label_issues` / `outliers` (training split only; cleaning by meaning, data/meaning.py):
  drop training examples whose labels disagree with their meaning (cleanlab on
  cross-validated probabilities from sentence embeddings), and texts far from all others
  (mean k-NN cosine distance above a quantile). They need an `embed` callable (texts ->
  embeddings), which the prepare face builds from the backbone; `review` receives one row
  per flagged example. An example both rules flag is counted as an outlier.
- `neutral_share`: downsample training examples whose only label is `neutral_label` until
  they make up at most this share of the training split (seeded).
- `drop_leakage`: drop val/test texts that also occur in the (cleaned) training split.
  Leakage is always counted (`found.leakage`; `found.leakage_normalized` also matches after
  lower-casing and collapsing whitespace).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from emotion_lab.data import meaning
from emotion_lab.data.types import SPLITS, DataError, LabelledData, Split

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {"min_chars": 0, "min_words": 0, "drop_url_only": False,
                            "drop_spam": False, "dedupe": False, "neutral_share": None,
                            "neutral_label": "neutral", "drop_leakage": False,
                            **meaning.RULES}
REMOVED = ("too_short", "url_only", "spam", "duplicates", "outliers", "label_issues",
           "neutral_downsampled", "leakage")
URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
WORD_CHAR = re.compile(r"\w")


def is_url_only(text: str) -> bool:
    return bool(URL.search(text)) and not WORD_CHAR.search(URL.sub(" ", text))


def is_spam(text: str) -> bool:
    if len(URL.findall(text)) >= 3:
        return True
    words = text.lower().split()
    return len(words) >= 6 and Counter(words).most_common(1)[0][1] > len(words) / 2


def normalized(text: str) -> str:
    return " ".join(text.lower().split())


def _check(rules: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(rules) - set(DEFAULTS))
    if unknown:
        raise DataError(f"data.clean: unknown rule(s) {unknown}; known: {sorted(DEFAULTS)}.")
    rules = {**DEFAULTS, **rules, **meaning.check_rules(rules)}
    share = rules["neutral_share"]
    if share is not None and not 0 < share < 1:
        raise DataError(f"data.clean.neutral_share={share}: expected a share between 0 and 1 "
                        f"(exclusive), or null to keep every neutral example.")
    return rules


def _filter(split: Split, keep: np.ndarray) -> tuple[Split, int]:
    return split.select(np.flatnonzero(keep)), int((~keep).sum())


def _per_split(split: Split, rules: dict[str, Any], removed: dict[str, int],
               found: dict[str, int]) -> Split:
    texts = split.texts
    keep = np.ones(len(texts), dtype=bool)
    if rules["min_chars"] or rules["min_words"]:
        keep = np.array([len(t.strip()) >= rules["min_chars"] and
                         len(t.split()) >= rules["min_words"] for t in texts])
    split, removed["too_short"] = _filter(split, keep)
    if rules["drop_url_only"]:
        split, removed["url_only"] = _filter(split, ~np.array([is_url_only(t)
                                                               for t in split.texts], bool))
    if rules["drop_spam"]:
        split, removed["spam"] = _filter(split, ~np.array([is_spam(t) for t in split.texts],
                                                          bool))
    first: dict[str, int] = {}
    duplicate = np.zeros(len(split), dtype=bool)
    for i, text in enumerate(split.texts):
        if text in first:
            duplicate[i] = True
            found["duplicates_label_conflicts"] += int(
                not np.array_equal(split.labels[i], split.labels[first[text]]))
        else:
            first[text] = i
    found["duplicates"] = int(duplicate.sum())
    if rules["dedupe"]:
        split, removed["duplicates"] = _filter(split, ~duplicate)
    return split


def _downsample_neutral(split: Split, label_names: list[str], rules: dict[str, Any],
                        seed: int) -> tuple[Split, int]:
    name = rules["neutral_label"]
    if name not in label_names:
        raise DataError(f"data.clean.neutral_share is set but there is no label "
                        f"{name!r} (labels: {', '.join(label_names)}); set "
                        f"data.clean.neutral_label.")
    j = label_names.index(name)
    only = (split.labels[:, j] == 1) & (split.labels.sum(axis=1) == 1)
    others = int((~only).sum())
    share = rules["neutral_share"]
    target = int(share * others / (1 - share))
    if only.sum() <= target:
        return split, 0
    rng = np.random.default_rng(seed)
    kept_neutral = rng.choice(np.flatnonzero(only), size=target, replace=False)
    keep = ~only
    keep[kept_neutral] = True
    return _filter(split, keep)


def _by_meaning(data: LabelledData, split: Split, rules: dict[str, Any],
                embed: meaning.Embed | None, seed: int, report: dict[str, Any],
                review: list[dict[str, Any]] | None) -> Split:
    on = [name for name in meaning.RULES if rules[name]["enabled"]]
    if not on:
        return split
    if embed is None:
        raise DataError(f"data.clean.{on[0]}.enabled=true needs the backbone's embeddings, "
                        f"which python -m emotion_lab.prepare computes: prepare with it "
                        f"(out_dir=<dir>), then train with data.dir=<dir>.")
    flags = meaning.flag(split, data.label_names, rules, embed, seed)
    report["found"] |= flags.found
    report["by_meaning"] = flags.details
    report["removed"]["outliers"] = int(flags.outlier.sum())
    report["removed"]["label_issues"] = int((flags.label_issue & ~flags.outlier).sum())
    if review is not None:
        review.extend(flags.review)
    return split.select(np.flatnonzero(~(flags.outlier | flags.label_issue)))


def clean(data: LabelledData, rules: dict[str, Any] | None, seed: int = 0,
          embed: meaning.Embed | None = None,
          review: list[dict[str, Any]] | None = None) -> tuple[LabelledData, dict[str, dict]]:
    """(cleaned data, per split {read, removed: {rule: n}, kept, found: {...}}). `embed`:
    texts -> embeddings, needed by label_issues and outliers; `review`, where given,
    receives one row per training example they flag."""
    rules = _check({k: dict(v) if isinstance(v, Mapping) else v
                    for k, v in dict(rules or {}).items()})
    report: dict[str, dict] = {}
    splits: dict[str, Split] = {}
    for name in SPLITS:
        removed = dict.fromkeys(REMOVED, 0)
        found = {"duplicates": 0, "duplicates_label_conflicts": 0}
        splits[name] = _per_split(data.splits[name], rules, removed, found)
        report[name] = {"read": len(data.splits[name]), "removed": removed, "found": found}
    splits["train"] = _by_meaning(data, splits["train"], rules, embed, seed, report["train"],
                                  review)
    if rules["neutral_share"] is not None:
        splits["train"], report["train"]["removed"]["neutral_downsampled"] = \
            _downsample_neutral(splits["train"], data.label_names, rules, seed)
    train_texts = set(splits["train"].texts)
    train_normalized = {normalized(t) for t in splits["train"].texts}
    for name in ("val", "test"):
        leaked = np.array([t in train_texts for t in splits[name].texts], dtype=bool)
        found = report[name]["found"]
        found["leakage"] = int(leaked.sum())
        found["leakage_normalized"] = sum(normalized(t) in train_normalized
                                          for t in splits[name].texts)
        if rules["drop_leakage"]:
            splits[name], report[name]["removed"]["leakage"] = _filter(splits[name], ~leaked)
    for name in SPLITS:
        report[name]["kept"] = len(splits[name])
        if not len(splits[name]):
            raise DataError(f"cleaning left the {name} split empty: {report[name]}. "
                            f"Loosen data.clean.")
        dropped = {k: v for k, v in report[name]["removed"].items() if v}
        if dropped:
            log.info("cleaning %s: %d -> %d examples (%s)", name, report[name]["read"],
                     report[name]["kept"], ", ".join(f"{k} {v}" for k, v in dropped.items()))
    return LabelledData(splits, data.label_names, data.problem_type, data.source,
                        data.report), report
