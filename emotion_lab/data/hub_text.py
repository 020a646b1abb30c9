"""A text-classification dataset from the Hugging Face hub as a source (`data=imdb`), read
with the same column options as the user's own files."""

from __future__ import annotations

from dataclasses import dataclass, replace

from emotion_lab.data.assembly import assemble
from emotion_lab.data.table_rows import TableOptions, read_rows, value_kind
from emotion_lab.data.types import DataError, LabelledData

HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


@dataclass
class HubText(TableOptions):
    """A text-classification dataset from the HF hub (e.g. stanfordnlp/imdb), same column options.

    `splits` maps ours (train, val, test) to the dataset's; null, or a default name the dataset
    lacks, splits that one off train. Label names come from a ClassLabel feature when present.
    """

    name: str
    config: str | None = None
    splits: dict[str, str | None] | None = None

    def load(self) -> LabelledData:
        import datasets

        try:
            ds = datasets.load_dataset(self.name, self.config)
        except Exception as e:  # offline, unknown name, hub outage: all end the same way
            raise DataError(
                f"Could not load {self.name!r} (config {self.config}) from the Hugging Face hub "
                f"({type(e).__name__}: {e}). The hub may be unreachable or the name wrong. To "
                f"train on your own files instead: data=local data.source.train=train.csv "
                f"(.csv/.tsv/.jsonl/.parquet; val and test files optional).") from e
        asked, parts, class_names = dict(self.splits or {}), {}, None
        for ours, theirs in {**HUB_SPLITS, **asked}.items():
            if theirs is not None and theirs not in ds and (ours == "train" or ours in asked):
                raise DataError(f"{self.name} has no split {theirs!r}; it has {list(ds)}. Set "
                                f"splits.{ours} to one of them, or null to split it off train.")
            if theirs is None or theirs not in ds:
                continue
            frame = ds[theirs].to_pandas()
            feature = ds[theirs].features.get(self.label_column)
            feature = getattr(feature, "feature", feature)  # a list's ClassLabel is inside
            if isinstance(feature, datasets.ClassLabel) and self.label_columns is None:
                class_names = feature.names  # ids become names; -1 (unlabelled) becomes missing
                name = dict(enumerate(class_names)).get
                frame[self.label_column] = frame[self.label_column].map(
                    lambda v, name=name: ([name(i) for i in v] if value_kind(v) == "list"
                                          else name(v)))
            parts[ours] = read_rows(frame, f"{self.name}[{theirs}]", self, id_prefix=theirs,
                                    line_offset=None)
        source = f"hub:{self.name}" + (f"/{self.config}" if self.config else "")
        data = assemble(parts, replace(self, labels=self.labels or class_names), source)
        if self.labels is None and class_names:
            data.report["label_order"] = "ClassLabel"
        return data
