"""GoEmotions: the original release files, the hub copy, or the rater-level raw files.

The release (`train.tsv`, `dev.tsv`, `test.tsv`, `emotions.txt`) is what `data.dir` usually
points at; see ../shared/goemotions/README.md for its format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion_lab.data.types import DataError, LabelledData, Split

SPLIT_FILES = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def read_label_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: label file not found (one label name a line, line i = id i).")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    if not names or any(not n for n in names):
        raise DataError(f"{path}: expected one non-empty label name per line.")
    return names


def multi_hot(rows: list[list[int]], num_labels: int) -> np.ndarray:
    labels = np.zeros((len(rows), num_labels), dtype=np.float32)
    for i, ids in enumerate(rows):
        labels[i, ids] = 1.0
    return labels


def read_release_tsv(path: Path, num_labels: int) -> Split:
    """Read one split of the original release: `text<TAB>label ids<TAB>comment id`, no header.

    Texts contain quotes, so lines are split on tabs only, never parsed as CSV.
    """
    if not path.is_file():
        raise DataError(f"{path}: split file not found. A GoEmotions directory holds "
                        f"{', '.join(SPLIT_FILES.values())} and emotions.txt.")
    texts, ids, rows = [], [], []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not valid UTF-8 ({e.reason}).") from None
            fields = line.split("\t")
            if len(fields) != 3:
                raise DataError(f"{where}: expected 3 tab-separated columns "
                                f"(text, label ids, id), found {len(fields)}.")
            text, label_field, comment_id = fields
            if not text.strip():
                raise DataError(f"{where}: empty text.")
            try:
                label_ids = [int(x) for x in label_field.split(",")]
            except ValueError:
                raise DataError(f"{where}: label ids must be comma-separated integers, "
                                f"got {label_field!r}.") from None
            bad = [i for i in label_ids if not 0 <= i < num_labels]
            if bad:
                raise DataError(f"{where}: label id {bad[0]} out of range: "
                                f"emotions.txt names {num_labels} labels (ids 0-{num_labels - 1}).")
            texts.append(text)
            ids.append(comment_id)
            rows.append(label_ids)
    if not texts:
        raise DataError(f"{path}: the file is empty.")
    return Split(texts, multi_hot(rows, num_labels), ids)


def read_release_dir(directory: str | Path) -> LabelledData:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data.dir={directory}: no such directory. Point data.dir (or "
                        f"GOEMOTIONS_DIR) at a folder holding train.tsv, dev.tsv, test.tsv "
                        f"and emotions.txt, or at a folder written by python -m "
                        f"emotion_lab.prepare.")
    names = read_label_names(directory / "emotions.txt")
    splits = {s: read_release_tsv(directory / f, len(names)) for s, f in SPLIT_FILES.items()}
    return LabelledData(splits, names, source=str(directory))


def read_hub(name: str, config: str | None) -> LabelledData:
    import datasets

    try:
        ds = datasets.load_dataset(name, config)
    except Exception as e:  # offline, unknown name, hub outage: all end the same way
        raise DataError(
            f"Could not load {name!r} ({config}) from the Hugging Face hub: {e}\n"
            f"Without the hub, point the run at a local copy in the original release "
            f"format: data.dir=/path/to/goemotions (or export GOEMOTIONS_DIR=...)."
        ) from e
    names = list(ds["train"].features["labels"].feature.names)
    splits = {
        ours: Split(list(ds[theirs]["text"]),
                    multi_hot(ds[theirs]["labels"], len(names)),
                    [str(i) for i in ds[theirs]["id"]])
        for ours, theirs in HUB_SPLITS.items()
    }
    return LabelledData(splits, names, source=f"hub:{name}/{config}")


class GoEmotions:
    """The GoEmotions source: rater files when given, else the release directory, else the hub.

    `rater_files`: the raw rater-level CSVs (goemotions_1.csv ...). Examples are rebuilt from
    them: a label is kept when at least `min_agreement` raters chose it (see raters.py).
    """

    def __init__(self, dir: str | None = None,
                 hub_name: str = "google-research-datasets/go_emotions",
                 hub_config: str | None = "simplified", rater_files: list[str] | None = None,
                 min_agreement: int = 2, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 seed: int = 0):
        self.dir, self.hub_name, self.hub_config = dir, hub_name, hub_config
        self.rater_files, self.min_agreement = rater_files, min_agreement
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed

    def load(self) -> LabelledData:
        if self.rater_files:
            from emotion_lab.data.raters import read_rater_files

            data, _ = read_rater_files(  # the report also travels as data.report
                list(self.rater_files), min_agreement=self.min_agreement,
                val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=self.seed)
            return data
        if self.dir is not None:
            return read_release_dir(self.dir)
        return read_hub(self.hub_name, self.hub_config)
