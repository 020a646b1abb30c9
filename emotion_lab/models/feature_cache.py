"""Frozen-backbone features: computed once per (backbone, data, max length, pooling,
layers), cached on disk, and served to the head in batches (adapter=frozen_head with
emotion_lab's own head).

A frozen backbone gives the same pooled vector for a text every epoch, so running it each
epoch is wasted work; after one pass the head trains on (N, width) tensors in seconds, or
(N, layers, width) where the head mixes several layers (model.head.layers). Features are
computed in eval mode (no dropout inside the frozen backbone).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from emotion_lab.data.batching import TokenizedSplit
from emotion_lab.data.datamodule import TextDataModule
from emotion_lab.models.backbones import RANDOM_INIT_SEED, resolve_source
from emotion_lab.models.heads import PooledClassifier, uses_hf_head

log = logging.getLogger(__name__)


def _weights_stamp(source: str) -> list:
    """Names, sizes and times of a local model folder's files: changed weights, new key."""
    folder = Path(source)
    if not folder.is_dir():
        return [source]  # a hub id: the revision is what the hub serves
    return sorted([f.name, f.stat().st_size, int(f.stat().st_mtime)]
                  for f in folder.iterdir() if f.is_file())


def cache_key(backbone: dict[str, Any], pooling: str, split: TokenizedSplit,
              layers: tuple[int, ...] | None = None) -> str:
    """Key of one split's features: backbone source and weights, pooling, the hidden states
    read (`layers`, PooledClassifier.layers; None: the last, whose key is the one files had
    before layers could be chosen), and the token ids themselves (so data, tokenizer and max
    length are all in it)."""
    source = resolve_source(backbone["model"], backbone.get("local_package"))
    facts = {"source": source, "weights": _weights_stamp(source), "pooling": pooling,
             "random_init": backbone.get("random_init"), "seed": RANDOM_INIT_SEED}
    if layers is not None:
        facts["layers"] = list(layers)
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode())
    for ids in split.input_ids:
        digest.update(ids.numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:24]


@torch.inference_mode()
def encode(model: PooledClassifier, split: TokenizedSplit, batch_size: int = 128,
           desc: str = "features") -> torch.Tensor:
    """(N, width) pooled features, or (N, layers, width) where the head mixes layers, in the
    split's order; length-sorted batches pad little."""
    was_training = model.training
    model.eval()
    order = torch.argsort(split.lengths, descending=True)
    out = torch.empty(0, model.config.hidden_size)
    for chunk in tqdm(order.split(batch_size), desc=desc, leave=False):
        batch = split.collate(chunk.tolist())
        pooled = model.pool(batch["input_ids"], batch["attention_mask"]).float()
        if len(out) != len(split):  # the width follows the pooling: known from the first
            out = torch.empty(len(split), *pooled.shape[1:])
        out[chunk] = pooled
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
        path = folder / f"{cache_key(backbone, model.pooling, split, model.layers)}.pt"
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


def use_cached_features(model: torch.nn.Module, datamodule: TextDataModule,
                        backbone: dict[str, Any], head: dict[str, Any],
                        cache_dir: str | Path, batch_size: int | None = None) -> float | None:
    """Make `datamodule` serve cached features of the frozen backbone under `model`'s own
    head; returns the seconds the features took (near zero when cached), or None where the
    head is HF's own, which has no pooled output to cache and trains through the backbone."""
    if uses_hf_head(head, backbone):
        log.info("adapter.cache_features needs emotion_lab's own head (model.head.pooling="
                 "mean or a hidden layer); HF's head trains through the frozen backbone.")
        return None
    start = time.perf_counter()
    features = cached_features(model, datamodule.tokenized, backbone, cache_dir,
                               datamodule.eval_batch_size)
    datamodule.use_features(features, batch_size)
    return time.perf_counter() - start
