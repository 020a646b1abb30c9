"""Evaluating what a generative model wrote: labels parsed from its answers, scored like
any predictions, and the share of answers that could not be read; and its rationales: are
they there, how long, do they name the emotions it predicted.

The model's per-label scores are evaluated as a classifier's (run_evaluation.py); this adds
the `split/generated/...` and `split/rationale/...` metrics beside them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emotion_lab.data.prompts import PromptFormat, mentions
from emotion_lab.evaluation.metrics import f1_scores


def parsed_predictions(generated: list[str], fmt: PromptFormat,
                       single_label: bool = False) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(0/1 predictions, one row per answer: text, labels, unknown words, rationale). A
    single-label answer predicts the first label it names."""
    index = {n: j for j, n in enumerate(fmt.label_names)}
    preds = np.zeros((len(generated), len(fmt.label_names)), dtype=np.float32)
    rows = []
    for i, text in enumerate(generated):
        parsed = fmt.parse(text)
        names = parsed.labels[:1] if single_label else parsed.labels
        preds[i, [index[n] for n in names]] = 1
        rows.append({"generated": text, "labels": names, "unknown": parsed.unknown,
                     "parsed": parsed.found, "rationale": parsed.rationale})
    return preds, rows


def rationale_quality(rows: list[dict[str, Any]], fmt: PromptFormat) -> dict[str, float]:
    """empty_rate; mean_words of the non-empty ones; names_predicted_rate: of the non-empty
    rationales of answers with labels, the share naming every predicted label."""
    texts = [r["rationale"] for r in rows]
    filled = [i for i, t in enumerate(texts) if t.strip()]
    checked = [i for i in filled if rows[i]["labels"]]
    words = {n: w for n, w in zip(fmt.label_names, fmt.words, strict=True)}
    names_all = [all(mentions(texts[i], words[n]) for n in rows[i]["labels"]) for i in checked]
    return {"empty_rate": 1 - len(filled) / len(texts) if texts else 0.0,
            "mean_words": float(np.mean([len(texts[i].split()) for i in filled]))
            if filled else 0.0,
            "names_predicted_rate": float(np.mean(names_all)) if names_all else 0.0}


def evaluate_generated(generated: list[str], labels: np.ndarray, fmt: PromptFormat,
                       split: str, single_label: bool = False
                       ) -> tuple[dict[str, float], np.ndarray, list[dict[str, Any]]]:
    """(metrics `split/generated/...` and `split/rationale/...`, predictions, rows)."""
    preds, rows = parsed_predictions(generated, fmt, single_label)
    scores = f1_scores(preds, labels, np.full(labels.shape[1], 0.5))
    prefix = f"{split}/generated"
    metrics = {f"{prefix}/{k}": float(scores[k])
               for k in ("macro_f1", "micro_f1", "macro_precision", "macro_recall")}
    if single_label:
        metrics[f"{prefix}/accuracy"] = float((preds * labels).sum(1).mean())
    written = sum(len(r["labels"]) + len(r["unknown"]) for r in rows)
    metrics[f"{prefix}/unparseable_rate"] = float(np.mean([not r["parsed"] for r in rows]))
    metrics[f"{prefix}/unknown_label_rate"] = \
        sum(len(r["unknown"]) for r in rows) / written if written else 0.0
    if fmt.rationale != "none":
        metrics |= {f"{split}/rationale/{k}": v for k, v in rationale_quality(rows, fmt).items()}
    return metrics, preds, rows
