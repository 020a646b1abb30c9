"""A teacher LLM behind an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's
server, Ollama, OpenAI itself), asked through the official `openai` client.

- Retries with exponential backoff are the client's own (`max_retries`: connection errors,
  408/409/429 and 5xx answers); a request that still fails is counted and left unanswered.
- At most `concurrency` requests are in flight (a thread pool; the client is thread-safe).
- `max_requests` bounds the requests a run may send (the cache answers the rest for free).
- Every answer is appended to a JSONL cache as it arrives, keyed by the request's content,
  so a stopped job resumes where it was and a rerun sends nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotion_lab.errors import TeacherError

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]



@dataclass
class TeacherStats:
    cached: int = 0        # answered from the cache
    sent: int = 0          # requests sent this run
    failed: int = 0        # sent, and failed after the client's retries
    over_budget: int = 0   # not sent: max_requests reached
    errors: list[str] = field(default_factory=list)  # the first few failures, for the report


class AnswerCache:
    """Append-only JSONL of {"key", "answer"}.

    A kill in the middle of a write leaves a partial last line: opening the cache cuts it
    off (a warning says so), so the next answer starts a line of its own instead of joining
    it and being lost at the next load. Any other line that does not read as an answer is
    skipped, and counted in a warning."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.answers: dict[str, str] = {}
        self.lock = threading.Lock()
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # past the last whole line
        lines, tail = data[:end].split(b"\n"), data[end:]
        if tail and self._read(tail) is None:
            with self.path.open("r+b") as f:
                f.truncate(end)
            log.warning("teacher cache %s: cut off a partial last line (%d bytes, a write "
                        "that was stopped); its request will be sent again", self.path,
                        len(tail))
        elif tail:  # a whole answer without its newline: keep it, end its line
            lines.append(tail)
            with self.path.open("ab") as f:
                f.write(b"\n")
        skipped = 0
        for line in lines:
            row = self._read(line)
            if row is None:
                skipped += line.strip() != b""
                continue
            self.answers[row[0]] = row[1]
        if skipped:
            log.warning("teacher cache %s: skipped %d line(s) that are not answers; their "
                        "requests will be sent again", self.path, skipped)

    @staticmethod
    def _read(line: bytes) -> tuple[str, str] | None:
        """(key, answer) of one line, or None where it is not one."""
        try:
            row = json.loads(line.decode("utf-8"))
            key, answer = row["key"], row["answer"]
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError):
            return None
        if not isinstance(key, str) or not isinstance(answer, str):
            return None
        return key, answer

    def get(self, key: str) -> str | None:
        return self.answers.get(key)

    def put(self, key: str, answer: str) -> None:
        with self.lock:
            self.answers[key] = answer
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "answer": answer}, ensure_ascii=False) + "\n")
                f.flush()


class Teacher:
    """Chat completions for many prompts: cached, bounded, concurrent, retried."""

    def __init__(self, model: str | None, base_url: str | None = None,
                 api_key: str | None = None, cache: str | Path = "teacher_cache.jsonl",
                 concurrency: int = 4, max_retries: int = 3, timeout: float = 60.0,
                 max_requests: int | None = None, temperature: float = 0.0,
                 max_tokens: int = 160, client: Any = None) -> None:
        if not model:
            raise TeacherError("no teacher model: set teacher.model=<name the server knows> "
                               "(or EMOTION_LAB_TEACHER_MODEL), and teacher.base_url for a "
                               "local server (or OPENAI_BASE_URL), e.g. "
                               "http://localhost:8000/v1 for vLLM.")
        if concurrency < 1:
            raise TeacherError(f"teacher.concurrency={concurrency}: must be at least 1")
        self.model, self.concurrency, self.max_requests = model, concurrency, max_requests
        self.settings = {"temperature": temperature, "max_tokens": max_tokens}
        self.cache = AnswerCache(cache)
        if client is None:
            try:
                from openai import OpenAI
            except ImportError as e:
                raise TeacherError("the teacher needs the openai client: pip install "
                                   "'emotion_lab[teacher]' (or pip install openai)") from e
            # local servers need no key, but the client insists on one
            client = OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                            max_retries=max_retries, timeout=timeout)
        self.client = client

    def key(self, messages: Messages) -> str:
        """The request's identity: same model, settings and messages, same answer."""
        payload = json.dumps([self.model, self.settings, messages], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def _ask(self, messages: Messages) -> str:
        response = self.client.chat.completions.create(model=self.model, messages=messages,
                                                       **self.settings)
        return response.choices[0].message.content or ""

    def ask_all(self, requests: list[Messages],
                progress: Callable[[int], None] | None = None
                ) -> tuple[list[str | None], TeacherStats]:
        """One answer per request (None: failed or over budget), in order."""
        stats = TeacherStats()
        answers: list[str | None] = [None] * len(requests)
        todo: list[int] = []
        for i, messages in enumerate(requests):
            cached = self.cache.get(self.key(messages))
            if cached is not None:
                answers[i] = cached
                stats.cached += 1
            else:
                todo.append(i)
        if progress and stats.cached:
            progress(stats.cached)
        budget = len(todo) if self.max_requests is None else min(len(todo), self.max_requests)
        stats.over_budget = len(todo) - budget
        if stats.over_budget:
            log.warning("teacher.max_requests=%d: %d request(s) not sent; rerun with a larger "
                        "budget to fill them in (cached answers cost nothing)",
                        self.max_requests, stats.over_budget)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._ask, requests[i]): i for i in todo[:budget]}
            for future in as_completed(futures):
                i = futures[future]
                stats.sent += 1
                try:
                    answers[i] = future.result()
                    self.cache.put(self.key(requests[i]), answers[i])
                except Exception as e:  # noqa: BLE001 (any client error: count it, go on)
                    stats.failed += 1
                    if len(stats.errors) < 5:
                        stats.errors.append(f"{type(e).__name__}: {e}"[:300])
                if progress:
                    progress(1)
        if stats.failed:
            log.warning("teacher: %d of %d request(s) failed after retries (first: %s)",
                        stats.failed, stats.sent, stats.errors[0])
        return answers, stats
