"""GoEmotions readers, tokenise-once splits, length-grouped batching and the DataModule."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


class DataError(ValueError):
    """Input data that cannot be used as it is; the message says where and how to fix it."""


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # (N, num_labels) float32 multi-hot
    ids: list[str]

    def head(self, n: int | None) -> Split:
        if n is None or n >= len(self.texts):
            return self
        return Split(self.texts[:n], self.labels[:n], self.ids[:n])


def read_label_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: label file not found (one label name a line, line i = id i).")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    if not names or any(not n for n in names):
        raise DataError(f"{path}: expected one non-empty label name per line.")
    return names


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


def multi_hot(rows: list[list[int]], num_labels: int) -> np.ndarray:
    labels = np.zeros((len(rows), num_labels), dtype=np.float32)
    for i, ids in enumerate(rows):
        labels[i, ids] = 1.0
    return labels


def read_release_dir(directory: str | Path) -> tuple[dict[str, Split], list[str]]:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data.dir={directory}: no such directory. Point data.dir (or "
                        f"GOEMOTIONS_DIR) at a folder holding train.tsv, dev.tsv, test.tsv "
                        f"and emotions.txt.")
    names = read_label_names(directory / "emotions.txt")
    splits = {s: read_release_tsv(directory / f, len(names)) for s, f in SPLIT_FILES.items()}
    return splits, names


def read_hub(name: str, config: str | None) -> tuple[dict[str, Split], list[str]]:
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
    return splits, names


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


class GoEmotionsDataModule(L.LightningDataModule):
    """GoEmotions from a release directory or the hub, tokenised once per run."""

    def __init__(self, tokenizer, dir: str | None = None,
                 hub_name: str = "google-research-datasets/go_emotions",
                 hub_config: str | None = "simplified", max_length: int = 128,
                 batch_size: int = 32, eval_batch_size: int = 128, num_workers: int = 0,
                 max_train_examples: int | None = None, max_eval_examples: int | None = None,
                 seed: int = 0):
        super().__init__()
        self.tokenizer = tokenizer
        self.dir, self.hub_name, self.hub_config = dir, hub_name, hub_config
        self.max_length = max_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.seed = num_workers, seed
        self.caps = {"train": max_train_examples, "val": max_eval_examples,
                     "test": max_eval_examples}
        self.splits: dict[str, Split] = {}
        self.tokenized: dict[str, TokenizedSplit] = {}
        self.label_names: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        if self.tokenized:  # tokenise once per run, whatever stage asks
            return
        if self.dir is not None:
            splits, self.label_names = read_release_dir(self.dir)
        else:
            splits, self.label_names = read_hub(self.hub_name, self.hub_config)
        self.splits = {name: split.head(self.caps[name]) for name, split in splits.items()}
        pad_id = self.tokenizer.pad_token_id
        for name, split in self.splits.items():
            enc = self.tokenizer(split.texts, truncation=True, max_length=self.max_length)
            self.tokenized[name] = TokenizedSplit(enc["input_ids"], split.labels, pad_id)
            lengths = self.tokenized[name].lengths.float()
            log.info("%s: %d examples, %.1f tokens on average, %d truncated to %d", name,
                     len(split.texts), lengths.mean(), int((lengths >= self.max_length).sum()),
                     self.max_length)

    @property
    def train_label_frequencies(self) -> np.ndarray:
        return label_frequencies(self.splits["train"].labels)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.tokenized[split]
        size = self.batch_size if shuffle else self.eval_batch_size
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
