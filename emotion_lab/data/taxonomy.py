"""Label taxonomies: the 27 GoEmotions emotions grouped into Ekman's 6 or 3 sentiments.

A mapping is JSON `{group: [member labels]}` (the paper's files ship in taxonomies/). Labels
that no group names (GoEmotions' `neutral`) stay as their own group, after the mapped ones.
A group is present when any member is: for multi-hot labels and for probabilities alike,
a group's value is the max of its members' values. For probabilities this is the score of
the most confident member, not the probability that some member applies (which would need
the members' joint distribution); it is what the paper used for its grouped results.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import numpy as np

from emotion_lab.data.types import DataError, LabelledData, Split

log = logging.getLogger(__name__)

ORIGINAL = "original"


def available() -> list[str]:
    names = [p.name.removesuffix(".json") for p in resources.files(__package__)
             .joinpath("taxonomies").iterdir() if p.name.endswith(".json")]
    return [ORIGINAL, *sorted(names)]


def load_mapping(name: str) -> dict[str, list[str]]:
    """A shipped taxonomy by name (ekman, sentiment), or a path to a JSON mapping file."""
    shipped = resources.files(__package__).joinpath("taxonomies", f"{name}.json")
    if shipped.is_file():
        text = shipped.read_text(encoding="utf-8")
    elif Path(name).is_file():
        text = Path(name).read_text(encoding="utf-8")
    else:
        raise DataError(f"data.taxonomy={name!r}: unknown. Choose one of {available()} or give "
                        f"the path of a JSON file mapping each group to its member labels.")
    mapping = json.loads(text)
    if not isinstance(mapping, dict) or not all(
            isinstance(v, list) and all(isinstance(m, str) for m in v) for v in mapping.values()):
        raise DataError(f"taxonomy {name!r}: expected a JSON object {{group: [labels]}}.")
    return mapping


def group_matrix(label_names: list[str], mapping: dict[str, list[str]],
                 name: str = "taxonomy") -> tuple[list[str], np.ndarray]:
    """(group names, (num_labels, num_groups) 0/1 membership matrix)."""
    index = {label: i for i, label in enumerate(label_names)}
    unknown = sorted({m for members in mapping.values() for m in members} - set(index))
    if unknown:
        raise DataError(f"{name}: member labels {unknown} are not labels of this dataset "
                        f"({', '.join(label_names)}). Is the data already grouped?")
    claimed = [m for members in mapping.values() for m in members]
    twice = sorted({m for m in claimed if claimed.count(m) > 1})
    if twice:
        raise DataError(f"{name}: labels {twice} belong to more than one group.")
    groups = list(mapping) + [label for label in label_names if label not in set(claimed)]
    members = {**mapping, **{g: [g] for g in groups[len(mapping):]}}
    matrix = np.zeros((len(label_names), len(groups)), dtype=np.float32)
    for j, group in enumerate(groups):
        matrix[[index[m] for m in members[group]], j] = 1.0
    return groups, matrix


def group_max(values: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, num_groups): each group's value is the max of its members' (labels or probs)."""
    masked = np.where(matrix[None, :, :] > 0, values[:, :, None], -np.inf)
    return masked.max(axis=1).astype(values.dtype)


def already_grouped(label_names: list[str], mapping: dict[str, list[str]]) -> bool:
    """True when the labels are the groups themselves (e.g. data prepared with ekman)."""
    only_members = {m for members in mapping.values() for m in members} - set(mapping)
    return set(mapping) <= set(label_names) and not only_members & set(label_names)


def apply_taxonomy(data: LabelledData, name: str) -> LabelledData:
    """The data with labels mapped to the taxonomy's groups (`original` changes nothing)."""
    if name == ORIGINAL:
        return data
    mapping = load_mapping(name)
    if already_grouped(data.label_names, mapping):
        log.info("labels are already the %s groups; nothing to map", name)
        return data
    if data.single_label:
        raise DataError(f"data.taxonomy={name}: taxonomies group multi-label emotions; "
                        f"this dataset is single-label.")
    groups, matrix = group_matrix(data.label_names, mapping, f"taxonomy {name!r}")
    splits = {s: Split(split.texts, group_max(split.labels, matrix), split.ids,
                       split.rationales)
              for s, split in data.splits.items()}
    log.info("taxonomy %s: %d labels grouped into %d (%s)", name, len(data.label_names),
             len(groups), ", ".join(groups))
    return LabelledData(splits, groups, data.problem_type, data.source, data.report)
