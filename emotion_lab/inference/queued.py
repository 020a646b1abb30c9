"""The predictor behind a Batcher: what the service's routes call when batching is on.

`QueuedClassifier.predict` answers as `EmotionClassifier.predict` does, and
`QueuedClassifier.explain` as `occlusion.explain_text`, but their forward passes go through
the batcher's queue (analyze lane, explain lane), so they share batches with other requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import numpy as np

from emotion_lab.inference.batcher import Batcher
from emotion_lab.inference.decision import check_options
from emotion_lab.inference.occlusion import explain_text
from emotion_lab.inference.predictor import EmotionClassifier


class QueuedClassifier:
    def __init__(self, clf: EmotionClassifier, batcher: Batcher) -> None:
        self.clf, self.batcher = clf, batcher

    async def predict(self, texts: list[str], top_k: int | None = None,
                      threshold: float | None = None,
                      all_scores: bool = False) -> list[dict[str, Any]]:
        check_options(top_k, threshold)
        texts = self.clf.check_texts(texts)
        probs, extras = await self.batcher.submit(texts, "analyze")
        return self.clf.results(probs, extras, top_k, threshold, all_scores)

    async def explain(self, text: str, emotions: list[str] | None,
                      occlusion: str) -> dict[str, Any]:
        """explain_text on a worker thread of the event loop's executor (words, variants:
        no torch); its passes go through the explain lane, a chunk at a time."""
        proxy = ExplainLane(self.clf, self.batcher, asyncio.get_running_loop())
        try:
            return await asyncio.to_thread(explain_text, proxy, text, emotions, occlusion)
        except asyncio.CancelledError:
            proxy.cancel()
            raise


class ExplainLane:
    """Answers explain_text's calls as the classifier would; `probabilities` goes through
    the batcher's explain lane in chunks of gather_texts texts, from a worker thread."""

    def __init__(self, clf: EmotionClassifier, batcher: Batcher,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.clf, self.batcher, self.loop = clf, batcher, loop
        self.pending: concurrent.futures.Future | None = None
        self.cancelled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.clf, name)

    def cancel(self) -> None:
        self.cancelled = True
        if self.pending is not None:
            self.pending.cancel()

    def probabilities(self, texts: list[str], batch_size: int | None = None,
                      progress: Any = None) -> np.ndarray:
        step, parts = self.batcher.gather_texts, []
        for start in range(0, len(texts), step):
            if self.cancelled:
                raise concurrent.futures.CancelledError
            self.pending = asyncio.run_coroutine_threadsafe(
                self.batcher.submit(texts[start:start + step], "explain"), self.loop)
            parts.append(self.pending.result()[0])
        return np.concatenate(parts) if parts else np.zeros((0, len(self.clf.labels)),
                                                            dtype=np.float32)
