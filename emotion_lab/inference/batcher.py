"""Dynamic batching for the service: texts of concurrent requests scored in one call.

    batcher = Batcher(lambda texts, answers: clf.score(texts, answers=answers))
    batcher.start()
    probs, extras = await batcher.submit(texts)          # from the web server's event loop

Requests enqueue (texts, future); one worker thread takes up to `gather_texts` texts, waiting
at most `max_wait_ms` after the oldest queued request for more (only once requests have come
together: the last batch held more than one), scores them in one call (the
predictor sorts them by token count into passes of its batch size) and resolves the futures.
Only this thread runs forward passes, so torch's threads (one per core) are never fought over
by the web server's. Two lanes: `analyze` first; `explain` (one pass per word, submitted in
chunks of at most `gather_texts`) takes every `explain_every`-th batch while analyze is busy
and every batch while it is idle, so neither starves the other. The queue is bounded in texts:
past `queue_texts`, `submit` raises QueueFull (the service answers 503 with Retry-After).
A request cancelled while waiting (its client went away) leaves the queue before scoring.

Why not LitServe (or TorchServe, Triton, Ray Serve): each brings its own server, process
model and request format, while the service is one FastAPI app whose routes, validation
messages, demo page and tests stay as they are. What we need of them is ~150 lines here:
a bounded queue, a wait bound, a priority lane, and dropping cancelled requests.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emotion_lab.errors import PredictError

Scored = tuple[np.ndarray, dict[str, list]]
LANES = ("analyze", "explain")


class QueueFull(PredictError):
    """The queue holds `queue_texts` texts already; `retry_after`: seconds to wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    texts: list[str]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.monotonic)


def bucket(size: int) -> str:
    """The histogram bucket of a batch size: 1, 2-3, 4-7, 8-15, ..."""
    low = 1 << (size.bit_length() - 1)
    return str(low) if low == 1 else f"{low}-{2 * low - 1}"


class Batcher:
    """Scores queued texts in batches on one worker thread (see the module's docstring).
    `score(texts, answers)`: calibrated probabilities and the per-text extras; answers=False
    for the explain lane (a generative run need not write its answers there)."""

    def __init__(self, score: Callable[[list[str], bool], Scored], gather_texts: int = 128,
                 max_wait_ms: float = 2.0, queue_texts: int = 1024,
                 explain_every: int = 4) -> None:
        self.score, self.gather_texts = score, gather_texts
        self.max_wait, self.queue_texts = max_wait_ms / 1000, queue_texts
        self.explain_every = explain_every
        self.cond = threading.Condition()
        self.lanes: dict[str, deque[Job]] = {lane: deque() for lane in LANES}
        self.queued = 0  # texts waiting, both lanes
        self.closing = False
        self.thread: threading.Thread | None = None
        self.since_explain = 0
        self.last_jobs = 0  # requests in the last batch
        # what GET /health reports
        self.batches, self.scored, self.dropped, self.rejected = 0, 0, 0, 0
        self.sizes: Counter[str] = Counter()
        self.recent: deque[int] = deque(maxlen=100)
        self.rate = 0.0  # texts/s of recent batches, for Retry-After

    def start(self) -> Batcher:
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, name="emotion_lab-batcher",
                                           daemon=True)
            self.thread.start()
        return self

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        if self.thread is not None:
            self.thread.join(timeout=30)
            self.thread = None

    async def submit(self, texts: list[str], lane: str = "analyze") -> Scored:
        """The texts' probabilities and extras, once a batch has scored them."""
        loop = asyncio.get_running_loop()
        job = Job(list(texts), loop.create_future(), loop)
        with self.cond:
            if self.queued and self.queued + len(job.texts) > self.queue_texts:
                self.rejected += 1
                raise QueueFull(f"the queue holds {self.queued} texts, its bound is "
                                f"{self.queue_texts} (queue_texts); retry later",
                                self.retry_after())
            self.lanes[lane].append(job)
            self.queued += len(job.texts)
            self.cond.notify()
        try:
            return await job.future
        except asyncio.CancelledError:
            with self.cond:  # still queued: leave the queue unscored
                if job in self.lanes[lane]:
                    self.lanes[lane].remove(job)
                    self.queued -= len(job.texts)
                    self.dropped += len(job.texts)
            raise

    def retry_after(self) -> int:
        """Seconds the worker needs for the texts queued now (at least 1)."""
        return max(1, math.ceil(self.queued / self.rate)) if self.rate else 1

    def health(self) -> dict[str, Any]:
        with self.cond:
            recent = list(self.recent)
            return {"queue_texts": self.queued, "queue_bound": self.queue_texts,
                    "queued_requests": {lane: len(q) for lane, q in self.lanes.items()},
                    "gather_texts": self.gather_texts, "max_wait_ms": self.max_wait * 1000,
                    "batches": self.batches, "scored_texts": self.scored,
                    "dropped_texts": self.dropped, "rejected_requests": self.rejected,
                    "batch_sizes": {
                        "histogram": dict(sorted(self.sizes.items(),
                                                 key=lambda kv: int(kv[0].split("-")[0]))),
                        "recent_mean": float(np.mean(recent)) if recent else None,
                        "recent_max": max(recent, default=None)}}

    # ------------------------------------------------------------------ the worker thread

    def take(self) -> tuple[str, list[Job]] | None:
        """The next batch: a lane and its jobs (None when closing)."""
        with self.cond:
            while not self.queued and not self.closing:
                self.cond.wait()
            if self.closing:
                return None
            # wait for company only where requests come together (the last batch held more
            # than one): a lone client would only pay the wait
            wait = self.max_wait if self.last_jobs > 1 else 0.0
            oldest = min(q[0].enqueued for q in self.lanes.values() if q)
            while (not self.closing and self.queued < self.gather_texts
                   and (left := oldest + wait - time.monotonic()) > 0):
                self.cond.wait(left)
            analyze, explain = self.lanes["analyze"], self.lanes["explain"]
            if not analyze and not explain:  # all cancelled while waiting
                return "analyze", []
            lane = "explain" if explain and (
                not analyze or self.since_explain >= self.explain_every) else "analyze"
            self.since_explain = 0 if lane == "explain" else self.since_explain + 1
            queue, jobs, count = self.lanes[lane], [], 0
            while queue and (not jobs or count + len(queue[0].texts) <= self.gather_texts):
                jobs.append(queue.popleft())
                count += len(jobs[-1].texts)
            self.queued -= count
            self.last_jobs = len(jobs)
            return lane, jobs

    def run(self) -> None:
        while (taken := self.take()) is not None:
            lane, jobs = taken
            if not jobs:
                continue
            texts = [t for job in jobs for t in job.texts]
            start = time.perf_counter()
            try:
                probs, extras = self.score(texts, lane == "analyze")
            except Exception as e:  # noqa: BLE001 (each waiting request gets the error)
                for job in jobs:
                    job.loop.call_soon_threadsafe(settle, job.future, None, e)
                continue
            seconds = time.perf_counter() - start
            with self.cond:
                self.batches += 1
                self.scored += len(texts)
                self.sizes[bucket(len(texts))] += 1
                self.recent.append(len(texts))
                rate = len(texts) / max(seconds, 1e-6)
                self.rate = rate if not self.rate else 0.8 * self.rate + 0.2 * rate
            at = 0
            for job in jobs:
                part = slice(at, at + len(job.texts))
                at = part.stop
                result = (probs[part], {k: v[part] for k, v in extras.items()})
                job.loop.call_soon_threadsafe(settle, job.future, result, None)


def settle(future: asyncio.Future, result: Scored | None, error: BaseException | None) -> None:
    """Resolve a request's future on its event loop (unless it was cancelled meanwhile)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
