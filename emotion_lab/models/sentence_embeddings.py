"""Sentence embeddings of texts from the frozen backbone: what cleaning by meaning
(emotion_lab.data.meaning) reads, built here because the data layer never loads a model.

Mean pooling over real tokens (how sentence-transformers such as all-MiniLM-L6-v2 are
trained), in eval mode, through the frozen head's feature cache (feature_cache): the same key
(backbone, weights, pooling, token ids) and the same `<cache_dir>/features/<key>.pt` files,
so a second prepare of the same texts reads them back instead of running the backbone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class

from emotion_lab.data.batching import TokenizedSplit
from emotion_lab.models.backbones import load_backbone, load_tokenizer
from emotion_lab.models.feature_cache import cache_key, cached_features
from emotion_lab.models.heads import PooledClassifier

log = logging.getLogger(__name__)

POOLING = "mean"


class SentenceEmbedder:
    """`embed(texts) -> (N, hidden) float32 array`, cached under `cache_dir/features/`. The
    backbone loads only on a cache miss."""

    def __init__(self, backbone: dict[str, Any], cache_dir: str | Path, batch_size: int = 128):
        self.backbone, self.cache_dir, self.batch_size = dict(backbone), cache_dir, batch_size

    def tokenized(self, texts: list[str]) -> TokenizedSplit:
        tokenizer = load_tokenizer(self.backbone)
        ids = tokenizer(list(texts), truncation=True,
                        max_length=self.backbone["max_length"])["input_ids"]
        return TokenizedSplit(ids, np.zeros((len(ids), 0), np.float32), tokenizer.pad_token_id)

    def __call__(self, texts: list[str]) -> np.ndarray:
        split = self.tokenized(texts)
        path = Path(self.cache_dir) / "features" / f"{cache_key(self.backbone, POOLING, split)}.pt"
        if path.is_file():
            log.info("embeddings: %d cached in %s", len(split), path)
            return torch.load(path).numpy()
        encoder_class = get_class(self.backbone.get("encoder_class") or "transformers.AutoModel")
        encoder = load_backbone(self.backbone, encoder_class)
        model = PooledClassifier(encoder, num_labels=1, pooling=POOLING, dropout=0.0)
        features = cached_features(model, {"embeddings": split}, self.backbone, self.cache_dir,
                                   self.batch_size)
        return features["embeddings"].numpy()
