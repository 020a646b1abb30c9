"""The data every source hands to training: labelled splits, tokenise-once tensors,
length-grouped batching, and the DataModule that ties a source, cleaning and taxonomy together.

Sources (goemotions.py, tables.py) return `LabelledData`; `TextDataModule.load()` applies the
cleaning rules and the label taxonomy; `setup()` tokenises once per run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
PROBLEM_TYPES = ("multi_label", "single_label")


class DataError(ValueError):
    """Input data that cannot be used as it is; the message says where and how to fix it."""


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # (N, num_labels) float32 multi-hot; one-hot for single-label tasks
    ids: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int | None) -> Split:
        if n is None or n >= len(self.texts):
            return self
        return Split(self.texts[:n], self.labels[:n], self.ids[:n])

    def select(self, indices: np.ndarray | list[int]) -> Split:
        indices = np.asarray(indices, dtype=int)
        return Split([self.texts[i] for i in indices], self.labels[indices],
                     [self.ids[i] for i in indices])


@dataclass
class LabelledData:
    splits: dict[str, Split]  # train, val, test
    label_names: list[str]
    problem_type: str = "multi_label"  # multi_label: sigmoid + BCE; single_label: softmax + CE
    source: str = ""
    report: dict[str, Any] = field(default_factory=dict)  # what the source did (raters, splits)

    @property
    def single_label(self) -> bool:
        return self.problem_type == "single_label"


def label_frequencies(labels: np.ndarray) -> np.ndarray:
    """Share of examples carrying each label."""
    return labels.mean(axis=0)


class TokenizedSplit(Dataset):
    """A split tokenised once: token id tensors without padding, and multi-hot labels."""

    def __init__(self, input_ids: list[list[int]], labels: np.ndarray, pad_id: int):
        self.input_ids = [torch.tensor(ids, dtype=torch.long) for ids in input_ids]
        self.lengths = torch.tensor([len(ids) for ids in input_ids], dtype=torch.long)
        self.labels = torch.from_numpy(labels)
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> int:
        return index  # collate() gathers and pads the whole batch at once

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.long)
        input_ids = torch.nn.utils.rnn.pad_sequence(
            [self.input_ids[i] for i in indices], batch_first=True, padding_value=self.pad_id)
        lengths = self.lengths[index]
        attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": self.labels[index], "index": index}


class LengthGroupedBatches(Sampler[list[int]]):
    """Batches of similar length, so dynamic padding pads little.

    Training: shuffle, cut into groups of `group_batches` batches, sort each group by
    length, batch it, shuffle the batches. Evaluation: one global sort by length.
    Under DDP each rank trains on every world_size-th batch, the batch count cut to a
    multiple of world_size so that ranks step together. Evaluation is not split: every
    rank sees the whole split, so predictions come back complete and in order, and metrics
    gathered across ranks are those of the split (each example counted world_size times).
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 group_batches: int = 50):
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.group_batches, self.epoch = seed, group_batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        if not self.shuffle:
            order = torch.argsort(self.lengths, descending=True, stable=True)
            return [b.tolist() for b in order.split(self.batch_size)]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g)
        batches = []
        for group in perm.split(self.batch_size * self.group_batches):
            group = group[torch.argsort(self.lengths[group], descending=True, stable=True)]
            batches.extend(group.split(self.batch_size))
        return [batches[i].tolist() for i in torch.randperm(len(batches), generator=g)]

    def _rank_slice(self, batches: list[list[int]]) -> list[list[int]]:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not (self.shuffle and distributed):
            return batches
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        return batches[: len(batches) - len(batches) % world][rank::world]

    def __iter__(self):
        return iter(self._rank_slice(self._batches()))

    def __len__(self) -> int:
        return len(self._rank_slice(self._batches()))


class TextDataModule(L.LightningDataModule):
    """Labelled texts from a source (or a directory written by `emotion_lab.prepare`), cleaned,
    mapped to the chosen taxonomy, tokenised once per run.

    `dir` holding train.parquet (a prepared directory) wins over `source`.
    """

    def __init__(self, tokenizer, source: Any = None, dir: str | None = None,
                 taxonomy: str = "original", eval_taxonomies: list[str] | None = None,
                 clean: dict[str, Any] | None = None, max_length: int = 128,
                 batch_size: int = 32, eval_batch_size: int = 128, num_workers: int = 0,
                 max_train_examples: int | None = None, max_eval_examples: int | None = None,
                 seed: int = 0):
        super().__init__()
        self.tokenizer, self.source, self.dir = tokenizer, source, dir
        self.taxonomy, self.eval_taxonomies = taxonomy, list(eval_taxonomies or [])
        self.clean = dict(clean or {})
        self.max_length = max_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.seed = num_workers, seed
        self.caps = {"train": max_train_examples, "val": max_eval_examples,
                     "test": max_eval_examples}
        self.data: LabelledData | None = None
        self.splits: dict[str, Split] = {}
        self.tokenized: dict[str, TokenizedSplit] = {}
        self.label_names: list[str] = []
        self.report: dict[str, Any] = {}

    def load(self) -> LabelledData:
        """Read, clean and regroup the data (no tokenizer needed); fills `self.report`."""
        from emotion_lab.cleaning import clean
        from emotion_lab.processed import is_prepared, read_prepared
        from emotion_lab.taxonomy import apply_taxonomy

        if self.dir is not None and is_prepared(self.dir):
            data = read_prepared(self.dir)
        elif self.dir is not None and getattr(self.source, "dir", None) != self.dir:
            raise DataError(f"data.dir={self.dir}: not a prepared directory (no train.parquet). "
                            f"Write one with python -m emotion_lab.prepare, or leave data.dir "
                            f"unset and name your files in data.source.")
        elif self.source is not None:
            data = self.source.load()
        else:
            raise DataError(f"data.dir={self.dir} is not a prepared directory and the data "
                            f"config names no source.")
        data, cleaning = clean(data, self.clean, seed=self.seed)
        data = apply_taxonomy(data, self.taxonomy)
        self.report = {"source": data.source, "taxonomy": self.taxonomy,
                       "problem_type": data.problem_type, "labels": data.label_names,
                       **({"source_report": data.report} if data.report else {}),
                       "rules": self.clean, "splits": cleaning}
        return data

    def setup(self, stage: str | None = None) -> None:
        if self.tokenized:  # tokenise once per run, whatever stage asks
            return
        self.data = self.load()
        self.label_names = self.data.label_names
        self.splits = {name: split.head(self.caps[name])
                       for name, split in self.data.splits.items()}
        pad_id = self.tokenizer.pad_token_id
        for name, split in self.splits.items():
            enc = self.tokenizer(split.texts, truncation=True, max_length=self.max_length)
            self.tokenized[name] = TokenizedSplit(enc["input_ids"], split.labels, pad_id)
            lengths = self.tokenized[name].lengths.float()
            log.info("%s: %d examples, %.1f tokens on average, %d truncated to %d", name,
                     len(split.texts), lengths.mean(), int((lengths >= self.max_length).sum()),
                     self.max_length)

    @property
    def problem_type(self) -> str:
        return self.data.problem_type if self.data else "multi_label"

    @property
    def train_label_frequencies(self) -> np.ndarray:
        return label_frequencies(self.splits["train"].labels)

    def use_features(self, features: dict[str, torch.Tensor],
                     batch_size: int | None = None) -> None:
        """Serve cached backbone features instead of tokens (frozen backbone, our own head)."""
        from emotion_lab.features import FeatureSplit

        self.batch_size = batch_size or self.batch_size
        self.features = {name: FeatureSplit(features[name], self.tokenized[name].labels)
                         for name in self.tokenized}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        size = self.batch_size if shuffle else self.eval_batch_size
        if getattr(self, "features", None):
            return self.features[split].loader(size, shuffle, self.seed)
        data = self.tokenized[split]
        batches = LengthGroupedBatches(data.lengths, size, shuffle=shuffle, seed=self.seed)
        return DataLoader(data, batch_sampler=batches, collate_fn=data.collate,
                          num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
