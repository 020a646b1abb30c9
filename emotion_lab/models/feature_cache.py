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
from collections.abc import Iterator
from contextlib import contextmanager
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


# poolings whose features are slices of the mean and the max of every hidden state
# (adapter.cache_every_state): one backbone pass serves every one of them, any layers
EVERY_STATE_POOLINGS = ("mean", "max", "mean_max")


@contextmanager
def _reading_every_state(model: PooledClassifier) -> Iterator[tuple[int, ...]]:
    """`model` pools the mean and max of every hidden state while inside."""
    asked = model.pooling, model.layers
    model.pooling = "mean_max"
    model.layers = tuple(range(model.config.num_hidden_layers + 1))
    try:
        yield model.layers
    finally:
        model.pooling, model.layers = asked


def _asked_of_every_state(features: torch.Tensor, model: PooledClassifier) -> torch.Tensor:
    """The features `model` reads, cut out of (N, every state, mean and max) ones."""
    last = features.shape[1] - 1
    picked = features[:, list(model.layers or (last,))]  # an index list copies: the whole goes
    width = features.shape[-1] // 2
    if model.pooling == "mean":
        picked = picked[..., :width]
    elif model.pooling == "max":
        picked = picked[..., width:]
    return (picked if model.layers else picked[:, 0]).contiguous()


def _load_or_encode(path: Path, model: PooledClassifier, split: TokenizedSplit,
                    batch_size: int, name: str) -> torch.Tensor:
    if path.is_file():
        log.info("%s features: %d cached in %s", name, len(split), path)
        return torch.load(path)
    features = encode(model, split, batch_size, desc=f"{name} features")
    tmp = path.with_suffix(".tmp")
    torch.save(features, tmp)
    tmp.replace(path)  # never leave a half-written file under the final name
    log.info("%s features: %d computed, cached in %s", name, len(split), path)
    return features


def cached_features(model: PooledClassifier, tokenized: dict[str, TokenizedSplit],
                    backbone: dict[str, Any], cache_dir: str | Path,
                    batch_size: int = 128, every_state: bool = False) -> dict[str, torch.Tensor]:
    """Each split's features, from `cache_dir/features/<key>.pt` when there, else computed
    and stored there. With `every_state`, a pooling in EVERY_STATE_POOLINGS is cut out of the
    mean and max of every hidden state, computed (and stored) once for all of them: a search
    over poolings and layers runs the backbone once."""
    folder = Path(cache_dir) / "features"
    folder.mkdir(parents=True, exist_ok=True)
    features = {}
    for name, split in tokenized.items():
        path = folder / f"{cache_key(backbone, model.pooling, split, model.layers)}.pt"
        if path.is_file() or not every_state or model.pooling not in EVERY_STATE_POOLINGS:
            features[name] = _load_or_encode(path, model, split, batch_size, name)
            continue
        with _reading_every_state(model) as every:
            whole = folder / f"{cache_key(backbone, 'mean_max', split, every)}.pt"
            whole_features = _load_or_encode(whole, model, split, batch_size,
                                             f"{name} (every state)")
        features[name] = _asked_of_every_state(whole_features, model)
        del whole_features
    return features


def use_cached_features(model: torch.nn.Module, datamodule: TextDataModule,
                        backbone: dict[str, Any], head: dict[str, Any],
                        cache_dir: str | Path, batch_size: int | None = None,
                        every_state: bool = False) -> float | None:
    """Make `datamodule` serve cached features of the frozen backbone under `model`'s own
    head; returns the seconds the features took (near zero when cached), or None where the
    head is HF's own, which has no pooled output to cache and trains through the backbone."""
    if uses_hf_head(head, backbone):
        log.info("adapter.cache_features needs emotion_lab's own head (model.head.pooling="
                 "mean or a hidden layer); HF's head trains through the frozen backbone.")
        return None
    start = time.perf_counter()
    features = cached_features(model, datamodule.tokenized, backbone, cache_dir,
                               datamodule.eval_batch_size, every_state)
    datamodule.use_features(features, batch_size)
    return time.perf_counter() - start
