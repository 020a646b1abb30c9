"""A model's metrics at grouped label levels (Ekman, sentiment): group probabilities and labels
are the max of their members' (see emotion_lab.data.taxonomy), group thresholds are fitted on
validation with the run's own policy."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from emotion_lab.data.taxonomy import already_grouped, group_matrix, group_max, load_mapping
from emotion_lab.data.types import DataError
from emotion_lab.evaluation.metrics import evaluate

log = logging.getLogger(__name__)


def evaluate_grouped(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                     label_names: list[str], taxonomies: list[str],
                     policy: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     ) -> tuple[dict[str, float], dict[str, list[dict]]]:
    """Metrics of a model at grouped levels, named `split/<taxonomy>/metric`.

    Group probabilities and labels are the max of their members'; thresholds for the groups
    are fitted on validation with the run's own policy. A taxonomy whose members are not
    this model's labels (other data, or labels already grouped) is skipped with a log line.
    """
    summary: dict[str, float] = {}
    rows: dict[str, list[dict]] = {}
    for name in taxonomies:
        mapping = load_mapping(name)
        if already_grouped(label_names, mapping):
            continue
        try:
            groups, matrix = group_matrix(label_names, mapping, f"taxonomy {name!r}")
        except DataError as e:
            log.info("no %s-level evaluation: %s", name, e)
            continue
        grouped = {s: (group_max(probs[s], matrix), group_max(labels[s], matrix))
                   for s in probs}
        thresholds = policy(*grouped["val"])  # validation only, as for the labels themselves
        for split, (p, y) in grouped.items():
            split_summary, rows[f"{split}/{name}"] = evaluate(p, y, thresholds, groups,
                                                              f"{split}/{name}")
            summary.update(split_summary)
    return summary, rows
