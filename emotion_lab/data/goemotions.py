"""GoEmotions: the release shipped in this package, a release directory, the hub copy, or
the rater-level raw files.

The release format: `train.tsv`, `dev.tsv`, `test.tsv` (`text<TAB>label ids<TAB>comment id`,
no header) and `emotions.txt` (one label name a line). Each .tsv may also be xz-compressed
(`train.tsv.xz`), which is how the package ships it: goemotions_release/ holds the original
release (Demszky et al., 2020; CC BY 4.0, see its NOTICE.md), 1.6 MB instead of 4.4 MB, with
the sha256 of every decompressed file in SHA256SUMS, checked as it is read.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np

from emotion_lab.data.types import DataError, LabelledData, Split

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
PACKAGED = "goemotions_release"


def packaged_release() -> Path:
    """The folder of the GoEmotions release that ships inside the package."""
    return Path(str(resources.files("emotion_lab.data") / PACKAGED))


def read_checksums(directory: Path) -> dict[str, str]:
    """{file name: sha256} from the folder's SHA256SUMS (`sha256sum` format), or {}."""
    path = directory / "SHA256SUMS"
    if not path.is_file():
        return {}
    return {name: digest for digest, name in
            (line.split() for line in path.read_text(encoding="ascii").splitlines() if line)}


def open_release_file(path: Path) -> BinaryIO:
    """`path`, or its xz-compressed twin `path.xz`, opened for binary reading."""
    if path.is_file():
        return path.open("rb")
    if path.with_name(path.name + ".xz").is_file():
        return lzma.open(path.with_name(path.name + ".xz"), "rb")
    raise DataError(f"{path}: split file not found. A GoEmotions directory holds "
                    f"{', '.join(SPLIT_FILES.values())} (or .tsv.xz) and emotions.txt.")


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


def read_release_tsv(path: Path, num_labels: int, sha256: str | None = None) -> Split:
    """Read one split of the original release: `text<TAB>label ids<TAB>comment id`, no header.

    Texts contain quotes, so lines are split on tabs only, never parsed as CSV. With `sha256`,
    the file's content must hash to it (a damaged or altered copy stops the run).
    """
    texts, ids, rows = [], [], []
    digest = hashlib.sha256()
    with open_release_file(path) as f:
        for lineno, raw in enumerate(f, start=1):
            digest.update(raw)
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
    if sha256 is not None and digest.hexdigest() != sha256:
        raise DataError(f"{path}: content does not match its sha256 in SHA256SUMS "
                        f"({digest.hexdigest()[:12]}... != {sha256[:12]}...); the copy is "
                        f"damaged or altered. Reinstall the package, or restore the file.")
    return Split(texts, multi_hot(rows, num_labels), ids)


def read_release_dir(directory: str | Path) -> LabelledData:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data.dir={directory}: no such directory. Point data.dir (or "
                        f"GOEMOTIONS_DIR) at a folder holding train.tsv, dev.tsv, test.tsv "
                        f"and emotions.txt, or at a folder written by python -m "
                        f"emotion_lab.prepare.")
    names = read_label_names(directory / "emotions.txt")
    sums = read_checksums(directory)
    splits = {s: read_release_tsv(directory / f, len(names), sums.get(f))
              for s, f in SPLIT_FILES.items()}
    return LabelledData(splits, names, source=str(directory))


def read_hub(name: str, config: str | None) -> LabelledData:
    import datasets

    try:
        ds = datasets.load_dataset(name, config)
    except Exception as e:  # offline, unknown name, hub outage: all end the same way
        raise DataError(
            f"Could not load {name!r} ({config}) from the Hugging Face hub: {e}\n"
            f"Without the hub, drop data.source.from_hub=true to use the release shipped in the "
            f"package, or point data.dir=/path/to/goemotions at a local copy."
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
    """The GoEmotions source, first match wins: `rater_files`, `from_hub`, `dir`, and by
    default the release shipped in the package. The hub is never tried unasked.

    `rater_files`: the raw rater-level CSVs (goemotions_1.csv ...). Examples are rebuilt from
    them: a label is kept when at least `min_agreement` raters chose it (see raters.py).
    """

    def __init__(self, dir: str | None = None, from_hub: bool = False,
                 hub_name: str = "google-research-datasets/go_emotions",
                 hub_config: str | None = "simplified", rater_files: list[str] | None = None,
                 min_agreement: int = 2, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 seed: int = 0):
        self.dir, self.from_hub = dir, from_hub
        self.hub_name, self.hub_config = hub_name, hub_config
        self.rater_files, self.min_agreement = rater_files, min_agreement
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed

    def load(self) -> LabelledData:
        if self.rater_files:
            from emotion_lab.data.raters import read_rater_files

            data, _ = read_rater_files(  # the report also travels as data.report
                list(self.rater_files), min_agreement=self.min_agreement,
                val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=self.seed)
            return data
        if self.from_hub:
            log.info("data: GoEmotions from the hub (%s, %s)", self.hub_name, self.hub_config)
            return read_hub(self.hub_name, self.hub_config)
        if self.dir is not None:
            log.info("data: GoEmotions from %s", self.dir)
            return read_release_dir(self.dir)
        log.info("data: GoEmotions, the release shipped in emotion_lab (CC BY 4.0)")
        return read_release_dir(packaged_release())
