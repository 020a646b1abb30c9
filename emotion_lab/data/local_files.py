"""The user's own labelled files as a source (`data=local`): CSV, TSV, JSONL or Parquet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emotion_lab.data.assembly import assemble
from emotion_lab.data.files import LINE_OFFSETS, read_table
from emotion_lab.data.table_rows import TableOptions, read_rows
from emotion_lab.data.types import DataError, LabelledData


@dataclass
class LocalFiles(TableOptions):
    """Source for a user's own files (instantiated by Hydra from conf/data/local.yaml).
    `train` is required; a missing `val` or `test` is split off train."""

    train: str | None = None
    val: str | None = None
    test: str | None = None

    def load(self) -> LabelledData:
        if not self.train:
            raise DataError("data.source.train is required: the path of your training file "
                            "(.csv, .tsv, .jsonl or .parquet); val and test are optional.")
        given = {"train": self.train, "val": self.val, "test": self.test}
        files = {s: Path(f) for s, f in given.items() if f}
        parts = {s: read_rows(read_table(path), str(path), self, id_prefix=path.stem,
                              line_offset=LINE_OFFSETS[path.suffix.lower()])
                 for s, path in files.items()}
        return assemble(parts, self, ", ".join(f"{s}={p}" for s, p in files.items()))
