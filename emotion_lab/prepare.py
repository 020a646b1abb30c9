"""Prepare data once, train many times: tidy Parquet splits, label map, frequencies, report.

    python -m emotion_lab.prepare data.dir=../shared/goemotions            # -> data/processed
    python -m emotion_lab.prepare data.dir=../shared/goemotions data.taxonomy=ekman \
        data.clean.dedupe=true out_dir=data/ekman
    python -m emotion_lab.train data.dir=data/processed                    # trains on them
    python -m emotion_lab.prepare data.clean.label_issues.enabled=true \
        data.clean.outliers.enabled=true out_dir=data/clean  # + flagged.csv, flagged_per_label.png
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from emotion_lab.cli import check_overrides, hydra_face
from emotion_lab.data.meaning import RULES as MEANING_RULES
from emotion_lab.data.meaning import flagged_per_label
from emotion_lab.data.prepared import write_prepared
from emotion_lab.data.types import SPLITS, LabelledData
from emotion_lab.evaluation.figures import plot_label_frequencies
from emotion_lab.evaluation.flagged_figure import plot_flagged_per_label
from emotion_lab.models.sentence_embeddings import SentenceEmbedder

log = logging.getLogger(__name__)


def frequency_table(data: LabelledData) -> pd.DataFrame:
    """One row per label: count and share of examples carrying it, per split."""
    table = pd.DataFrame({"label": data.label_names})
    for name in SPLITS:
        labels = data.splits[name].labels
        table[f"{name}_count"] = labels.sum(axis=0).astype(int)
        table[f"{name}_share"] = (labels.mean(axis=0)).round(6)
    return table


def write_review(out: Path, review: list[dict[str, Any]], train: dict[str, Any]) -> None:
    """flagged.csv (one row per flagged training example, worst first) and
    flagged_per_label.png, for a person to read before trusting the removals."""
    columns = ["id", "text", "given_labels", "suggested_labels", "reason", "label_quality",
               "outlier_distance", "removed"]
    pd.DataFrame(review, columns=columns).to_csv(out / "flagged.csv", index=False)
    removed = train["removed"]["label_issues"] + train["removed"]["outliers"]
    plot_flagged_per_label(flagged_per_label(review, train["by_meaning"]["read_per_label"]),
                           out / "flagged_per_label.png",
                           f"Cleaning by meaning: {len(review)} of {train['read']} training "
                           f"examples flagged, {removed} removed")
    seconds = {k: v for k, v in train["by_meaning"].items() if k != "read_per_label"}
    log.info("cleaning by meaning: %d flagged, %d removed (%s); review %s",
             len(review), removed, seconds, out / "flagged.csv")


def prepare(cfg: DictConfig) -> dict[str, Any]:
    """Read, clean and regroup the data of `cfg.data`, write it under `cfg.out_dir`."""
    out = Path(cfg.out_dir)
    by_meaning = any(OmegaConf.select(cfg, f"data.clean.{rule}.enabled", default=False)
                     for rule in MEANING_RULES)
    embed = SentenceEmbedder(OmegaConf.to_container(cfg.backbone, resolve=True),
                             cfg.cache_dir, cfg.data.eval_batch_size) if by_meaning else None
    datamodule = instantiate(cfg.data, tokenizer=None, embed=embed)
    data = datamodule.load()
    report = datamodule.report
    write_prepared(out, data, report)
    if by_meaning:
        write_review(out, datamodule.review, report["splits"]["train"])
    table = frequency_table(data)
    table.to_csv(out / "label_frequencies.csv", index=False)
    plot_label_frequencies(table, out / "label_frequencies.png",
                           f"Label frequencies ({len(data.label_names)} labels, "
                           f"taxonomy {datamodule.taxonomy})")
    for name in SPLITS:
        split = report["splits"][name]
        removed = {k: v for k, v in split["removed"].items() if v}
        log.info("%-5s read %6d kept %6d removed %s found %s", name, split["read"],
                 split["kept"], removed or "nothing", split["found"])
    rare, common = table.nsmallest(1, "train_share").iloc[0], table.nlargest(1, "train_share")
    log.info("rarest training label %s (%d, %.2f%%), most frequent %s (%d, %.2f%%)",
             rare["label"], rare["train_count"], 100 * rare["train_share"],
             common["label"].iloc[0], common["train_count"].iloc[0],
             100 * common["train_share"].iloc[0])
    log.info("wrote %s", out)
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
@hydra_face
def main(cfg: DictConfig) -> None:
    report = prepare(cfg)
    print(json.dumps({s: {k: report["splits"][s][k] for k in ("read", "kept")}
                      for s in SPLITS}))


if __name__ == "__main__":
    check_overrides("prepare")
    main()
