"""Rationales in a prepared data directory: the checks a rationale must pass before a model
is taught it, and adding the `rationale` column to the directory's splits.

A rationale is kept when it is consistent with the example's gold labels (it names each of
them, or at least one; `require_labels`) and its length lies within bounds. Rejected ones
are stored as "" (the example then teaches its labels alone) and counted by reason.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from emotion_lab.data.prepared import RATIONALE, is_prepared
from emotion_lab.data.prompts import mentions
from emotion_lab.data.types import SPLITS, DataError

REQUIRE = ("all", "any", "none")


def check_rationale(text: str | None, label_words: list[str], min_words: int = 3,
                    max_words: int = 80, require_labels: str = "all") -> str | None:
    """Why `text` is rejected (a short reason), or None when it is kept."""
    if require_labels not in REQUIRE:
        raise DataError(f"require_labels={require_labels!r}: choose all, any or none.")
    if text is None:
        return "no answer"
    words = len(text.split())
    if words == 0:
        return "empty"
    if words < min_words:
        return "too short"
    if words > max_words:
        return "too long"
    named = [mentions(text, w) for w in label_words]
    if require_labels == "all" and not all(named):
        return "does not name every gold label"
    if require_labels == "any" and label_words and not any(named):
        return "names no gold label"
    return None


def filter_rationales(texts: list[str | None], label_words: list[list[str]],
                      **rules) -> tuple[list[str], Counter]:
    """(kept texts, "" where rejected; counts of kept and of each rejection reason)."""
    kept, counts = [], Counter()
    for text, words in zip(texts, label_words, strict=True):
        reason = check_rationale(text, words, **rules)
        counts[reason or "kept"] += 1
        kept.append(text.strip() if reason is None else "")
    return kept, counts


def read_split(directory: str | Path, split: str) -> pd.DataFrame:
    directory = Path(directory)
    if not is_prepared(directory):
        raise DataError(f"{directory}: not a prepared data directory (no train.parquet). "
                        f"Write one first: python -m emotion_lab.prepare out={directory}")
    return pd.read_parquet(directory / f"{split}.parquet")


def write_rationales(directory: str | Path, rationales: dict[str, list[str]]) -> None:
    """Set the rationale column of each split named in `rationales` (the others get an
    empty column if they have none), rewriting each parquet file atomically."""
    directory = Path(directory)
    for split in SPLITS:
        frame = read_split(directory, split)
        if split in rationales:
            if len(rationales[split]) != len(frame):
                raise DataError(f"{split}: {len(rationales[split])} rationales for "
                                f"{len(frame)} rows")
            frame[RATIONALE] = rationales[split]
        elif RATIONALE not in frame.columns:
            frame[RATIONALE] = ""
        tmp = directory / f".{split}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(directory / f"{split}.parquet")
