"""Prepare data once, train many times: tidy Parquet splits, label map, frequencies, report.

    python -m emotion_lab.prepare data.dir=../shared/goemotions            # -> data/processed
    python -m emotion_lab.prepare data.dir=../shared/goemotions data.taxonomy=ekman \
        data.clean.dedupe=true out_dir=data/ekman
    python -m emotion_lab.train data.dir=data/processed                    # trains on them
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from emotion_lab.cli import check_overrides, hydra_face
from emotion_lab.data.prepared import write_prepared
from emotion_lab.data.types import SPLITS, LabelledData
from emotion_lab.evaluation.figures import plot_label_frequencies

log = logging.getLogger(__name__)


def frequency_table(data: LabelledData) -> pd.DataFrame:
    """One row per label: count and share of examples carrying it, per split."""
    table = pd.DataFrame({"label": data.label_names})
    for name in SPLITS:
        labels = data.splits[name].labels
        table[f"{name}_count"] = labels.sum(axis=0).astype(int)
        table[f"{name}_share"] = (labels.mean(axis=0)).round(6)
    return table


def prepare(cfg: DictConfig) -> dict[str, Any]:
    """Read, clean and regroup the data of `cfg.data`, write it under `cfg.out_dir`."""
    out = Path(cfg.out_dir)
    datamodule = instantiate(cfg.data, tokenizer=None)
    data = datamodule.load()
    report = datamodule.report
    write_prepared(out, data, report)
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
