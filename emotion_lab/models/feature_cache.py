"""Frozen-backbone features: computed once per (backbone, data, max length, pooling), cached
on disk, and served to the head in batches (adapter=frozen_head with emotion_lab's own head).

A frozen backbone gives the same pooled vector for a text every epoch, so running it each
epoch is wasted work; after one pass the head trains on (N, hidden) tensors in seconds.
Features are computed in eval mode (no dropout inside the frozen backbone).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from emotion_lab.backbones import RANDOM_INIT_SEED, PooledClassifier, resolve_source
from emotion_lab.data import TokenizedSplit

log = logging.getLogger(__name__)


def _weights_stamp(source: str) -> list:
    """Names, sizes and times of a local model folder's files: changed weights, new key."""
    folder = Path(source)
    if not folder.is_dir():
        return [source]  # a hub id: the revision is what the hub serves
    return sorted([f.name, f.stat().st_size, int(f.stat().st_mtime)]
                  for f in folder.iterdir() if f.is_file())


def cache_key(backbone: dict[str, Any], pooling: str, split: TokenizedSplit) -> str:
    """Key of one split's features: backbone source and weights, pooling, and the token ids
    themselves (so data, tokenizer and max length are all in it)."""
    source = resolve_source(backbone["model"], backbone.get("local_package"))
    digest = hashlib.sha256(json.dumps({
        "source": source, "weights": _weights_stamp(source), "pooling": pooling,
        "random_init": backbone.get("random_init"), "seed": RANDOM_INIT_SEED,
    }, sort_keys=True, default=str).encode())
    for ids in split.input_ids:
        digest.update(ids.numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:24]


@torch.inference_mode()
def encode(model: PooledClassifier, split: TokenizedSplit, batch_size: int = 128,
           desc: str = "features") -> torch.Tensor:
    """(N, hidden) pooled features, in the split's order; length-sorted batches pad little."""
    was_training = model.training
    model.eval()
    order = torch.argsort(split.lengths, descending=True)
    out = torch.empty(len(split), model.config.hidden_size)
    for chunk in tqdm(order.split(batch_size), desc=desc, leave=False):
        batch = split.collate(chunk.tolist())
        out[chunk] = model.pool(batch["input_ids"], batch["attention_mask"]).float()
    model.train(was_training)
    return out


def cached_features(model: PooledClassifier, tokenized: dict[str, TokenizedSplit],
                    backbone: dict[str, Any], cache_dir: str | Path,
                    batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Each split's features, from `cache_dir/features/<key>.pt` when there, else computed
    and stored there."""
    folder = Path(cache_dir) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    features = {}
    for name, split in tokenized.items():
        path = folder / f"{cache_key(backbone, model.pooling, split)}.pt"
        if path.is_file():
            features[name] = torch.load(path)
            log.info("%s features: %d cached in %s", name, len(split), path)
            continue
        features[name] = encode(model, split, batch_size, desc=f"{name} features")
        tmp = path.with_suffix(".tmp")
        torch.save(features[name], tmp)
        tmp.replace(path)  # never leave a half-written file under the final name
        log.info("%s features: %d computed, cached in %s", name, len(split), path)
    return features


class FeatureSplit(Dataset):
    """Pooled features and labels of one split; batches look like token batches minus tokens."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.long)
        return {"features": self.features[index], "labels": self.labels[index], "index": index}

    def loader(self, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
        # one generator for the loader's life: each epoch draws the next permutation
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=self.collate)
