"""Hydra face that adds a `rationale` column to a prepared data directory.

    python -m emotion_lab.rationales data_dir=data/processed source=teacher \
        teacher.base_url=http://localhost:8000/v1 teacher.model=<model>
    python -m emotion_lab.rationales data_dir=data/processed source=template \
        template.run_dir=outputs/train/runs/<classifier run>

`teacher`: a larger LLM explains each example's gold emotions (emotion_lab.data.teacher: cached,
bounded, concurrent, retried). `template`: no LLM; a trained classifier's occlusion
importance (the `explain` computation) names the words that carry each gold emotion.
Either way the rationales are filtered (emotion_lab.data.rationales) and the counts kept and
rejected go to rationales_report.json beside the data.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from emotion_lab.cli import check_overrides, hydra_face
from emotion_lab.data.prepared import LABEL_PREFIX
from emotion_lab.data.rationales import filter_rationales, read_split, write_rationales
from emotion_lab.data.teacher import Teacher
from emotion_lab.data.types import SPLITS, DataError
from emotion_lab.inference.occlusion import explain_text
from emotion_lab.inference.predictor import EmotionClassifier

log = logging.getLogger(__name__)


def gold_labels(frame, label_names: list[str]) -> list[list[str]]:
    matrix = frame[[LABEL_PREFIX + n for n in label_names]].to_numpy()
    return [[label_names[j] for j in np.flatnonzero(row)] for row in matrix]


def label_names_of(data_dir: Path) -> list[str]:
    path = data_dir / "label_map.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; is {data_dir} written by python -m "
                        f"emotion_lab.prepare?")
    mapping = json.loads(path.read_text(encoding="utf-8"))
    return [mapping[str(i)] for i in range(len(mapping))]


def word(label: str) -> str:
    return label.replace("_", " ")


def teacher_rationales(texts: list[str], golds: list[list[str]], settings: dict[str, Any],
                       split: str) -> tuple[list[str | None], dict[str, Any]]:
    settings = dict(settings)
    system, prompt = settings.pop("system"), settings.pop("prompt")
    teacher = Teacher(**settings)
    requests = [[{"role": "system", "content": system},
                 {"role": "user", "content": prompt.replace("{text}", text).replace(
                     "{labels}", ", ".join(word(g) for g in gold) or "none")}]
                for text, gold in zip(texts, golds, strict=True)]
    with tqdm(total=len(requests), desc=f"teacher: {split}", unit="text") as bar:
        answers, stats = teacher.ask_all(requests, bar.update)
    return answers, {"cached": stats.cached, "sent": stats.sent, "failed": stats.failed,
                     "over_budget": stats.over_budget, "errors": stats.errors}


def template_rationale(clf: EmotionClassifier, text: str, gold: list[str], top_words: int,
                       sentence: str) -> str:
    """One sentence per gold emotion quoting its most important words (positive occlusion
    importance); an emotion no word supports is left out."""
    if not gold or not text.strip():
        return ""
    result = explain_text(clf, text, gold)
    parts = []
    for label in gold:
        # punctuation can matter to the model ('!'), but a quoted '.' explains nothing
        words = sorted((w for w in result["emotions"][label]["words"]
                        if w["importance"] > 0 and any(c.isalnum() for c in w["word"])),
                       key=lambda w: -w["importance"])[:top_words]
        if words:
            # quoted in text order, so that the words read as they were written
            quoted = " ... ".join(w["word"] for w in sorted(words, key=lambda w: w["start"]))
            parts.append(sentence.replace("{words}", quoted).replace("{label}", word(label)))
    return "; ".join(parts) + ("." if parts else "")


def template_rationales(texts: list[str], golds: list[list[str]], settings: dict[str, Any],
                        label_names: list[str], split: str) -> tuple[list[str], dict[str, Any]]:
    run_dir = settings.get("run_dir")
    if not run_dir:
        raise DataError("source=template needs template.run_dir=<a trained classifier run "
                        "over the same labels> (python -m emotion_lab.train)")
    clf = EmotionClassifier.from_run(run_dir)
    missing = sorted(set(label_names) - set(clf.labels))
    if missing:
        raise DataError(f"template.run_dir={run_dir} does not predict {missing}; train a "
                        f"classifier on this data's labels ({', '.join(label_names)}).")
    out = [template_rationale(clf, t, g, settings["top_words"], settings["sentence"])
           for t, g in tqdm(list(zip(texts, golds, strict=True)), desc=f"template: {split}",
                            unit="text")]
    return out, {"run_dir": str(run_dir)}


def add_rationales(cfg: DictConfig) -> dict[str, Any]:
    """Write the rationale column; returns the report (also saved as rationales_report.json)."""
    data_dir = Path(cfg.data_dir)
    label_names = label_names_of(data_dir)
    unknown = sorted(set(cfg.splits) - set(SPLITS))
    if unknown or cfg.source not in ("teacher", "template"):
        raise DataError(f"splits={list(cfg.splits)}, source={cfg.source}: splits are "
                        f"{', '.join(SPLITS)}; sources teacher and template.")
    settings = OmegaConf.to_container(cfg[cfg.source], resolve=True)
    report: dict[str, Any] = {"source": cfg.source, "filters": dict(cfg.filters), "splits": {}}
    columns = {}
    for split in cfg.splits:
        frame = read_split(data_dir, split)
        n = len(frame) if cfg.max_examples is None else min(cfg.max_examples, len(frame))
        texts, golds = frame["text"].tolist()[:n], gold_labels(frame, label_names)[:n]
        if cfg.source == "teacher":
            answers, details = teacher_rationales(texts, golds, settings, split)
        else:
            answers, details = template_rationales(texts, golds, settings, label_names, split)
        kept, counts = filter_rationales(answers, [[word(g) for g in gold] for gold in golds],
                                         **cfg.filters)
        columns[split] = kept + [""] * (len(frame) - n)
        report["splits"][split] = {"rows": len(frame), "asked": n, **details,
                                   "kept": counts.pop("kept", 0),
                                   "rejected": dict(Counter(counts).most_common())}
        log.info("%s: %d of %d rationales kept; rejected: %s", split,
                 report["splits"][split]["kept"], n, report["splits"][split]["rejected"] or "none")
    write_rationales(data_dir, columns)
    (data_dir / "rationales_report.json").write_text(json.dumps(report, indent=2) + "\n",
                                                      encoding="utf-8")
    log.info("wrote the rationale column to %s (report: rationales_report.json)", data_dir)
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="rationales")
@hydra_face
def main(cfg: DictConfig) -> None:
    add_rationales(cfg)


if __name__ == "__main__":
    check_overrides("rationales")
    main()
