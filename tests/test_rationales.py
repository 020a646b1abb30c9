"""python -m emotion_lab.rationales: the teacher against a local chat-completions server
(canned answers, a failure to retry, a malformed answer to reject, a budget, resume from the
cache), the filters, and template rationales from a real MiniLM classifier run."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import CUES, compose_config, compose_train_cfg

from emotion_lab.data.goemotions import GoEmotions
from emotion_lab.data.prepared import read_prepared, write_prepared
from emotion_lab.data.rationales import check_rationale
from emotion_lab.data.teacher import Teacher, TeacherError
from emotion_lab.rationales import add_rationales
from emotion_lab.train import train


class ChatServer:
    """A local OpenAI-compatible /v1/chat/completions endpoint. It answers "The words show
    <labels>." for the emotions the user message lists; the first request about a text
    containing FLAKY gets a 500 (the client must retry); texts containing MALFORMED get an
    answer that names no emotion (the filter must reject it)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.failed_once: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["messages"][-1]["content"]
                server.requests.append(user)
                if "FLAKY" in user and user not in server.failed_once:
                    server.failed_once.add(user)
                    self.reply(500, {"error": {"message": "overloaded", "type": "server"}})
                    return
                labels = re.search(r"Emotions: (.*)", user).group(1)
                content = "It is hard to say." if "MALFORMED" in user \
                    else f"The words show {labels.replace(', ', ' and ')}."
                self.reply(200, {
                    "id": "cmpl-1", "object": "chat.completion", "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

            def reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def chat_server():
    server = ChatServer()
    yield server
    server.close()


@pytest.fixture
def prepared(goemotions_dir, tmp_path):
    """The fixture as a prepared directory, two training texts marked FLAKY and MALFORMED."""
    data = GoEmotions(dir=str(goemotions_dir)).load()
    train_split = data.splits["train"]
    train_split.texts[0] = "FLAKY " + train_split.texts[0]
    train_split.texts[1] = "MALFORMED " + train_split.texts[1]
    write_prepared(tmp_path / "prepared", data, {"problem_type": "multi_label"})
    return tmp_path / "prepared"


def rationales_cfg(data_dir, *overrides):
    return compose_config(f"data_dir={data_dir}", *overrides, config_name="rationales")


def test_the_teacher_retries_rejects_keeps_a_budget_and_resumes_from_its_cache(
        chat_server, prepared):
    common = ("source=teacher", f"teacher.base_url={chat_server.url}", "teacher.model=teacher",
              "max_examples=12", "teacher.concurrency=3")
    # first run: a budget of 5 requests (one of them retried by the client after its 500)
    report = add_rationales(rationales_cfg(prepared, *common, "teacher.max_requests=5"))
    first = report["splits"]["train"]
    assert (first["asked"], first["sent"], first["over_budget"], first["failed"]) == (12, 5, 7, 0)
    assert len(chat_server.requests) == 6  # 5 answered, one of them after a retry
    assert first["kept"] == 4 and first["rejected"] == {
        "no answer": 7, "does not name every gold label": 1}
    # the rerun sends only what is missing; the third sends nothing at all
    report = add_rationales(rationales_cfg(prepared, *common))
    assert report["splits"]["train"]["cached"] == 5 and report["splits"]["train"]["sent"] == 7
    report = add_rationales(rationales_cfg(prepared, *common))
    assert report["splits"]["train"]["sent"] == 0 and len(chat_server.requests) == 13
    assert report["splits"]["train"]["kept"] == 11
    # the column: kept rationales name the gold labels, the rest of the split is empty
    data = read_prepared(prepared)
    train_split = data.splits["train"]
    assert train_split.rationales[1] == ""  # MALFORMED: rejected
    for i in (0, 2, 11):
        gold = [data.label_names[j] for j, v in enumerate(train_split.labels[i]) if v]
        assert train_split.rationales[i] == f"The words show {' and '.join(gold)}."
    assert train_split.rationales[12:] == [""] * (len(train_split) - 12)
    assert data.splits["val"].rationales == [""] * len(data.splits["val"])
    saved = json.loads((prepared / "rationales_report.json").read_text())
    assert saved["splits"]["train"]["kept"] == 11


def test_a_truncated_cache_line_is_skipped_and_the_request_sent_again(chat_server, tmp_path):
    cache = tmp_path / "cache.jsonl"
    teacher = Teacher("teacher", chat_server.url, cache=cache)
    asks = [[{"role": "user", "content": f"Emotions: joy {i}"}] for i in range(2)]
    answers, stats = teacher.ask_all(asks)
    assert stats.sent == 2 and answers[0] == "The words show joy 0."
    lines = cache.read_text().splitlines()
    cache.write_text(lines[0] + "\n" + lines[1][:20])  # killed in the middle of a write
    answers, stats = Teacher("teacher", chat_server.url, cache=cache).ask_all(asks)
    assert (stats.cached, stats.sent) == (1, 1) and answers[1] == "The words show joy 1."


class CountingClient:
    """A stand-in for the openai client: answers "answer to <message>", counts requests."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, model: str, messages: list[dict[str, str]], **_) -> SimpleNamespace:
        self.asked.append(messages[-1]["content"])
        message = SimpleNamespace(content=f"answer to {messages[-1]['content']}")
        return SimpleNamespace(choices=[SimpleNamespace(message=message)])


def test_an_answer_after_a_kill_mid_line_is_kept_and_nothing_is_paid_twice(tmp_path, caplog):
    def teacher(cache, client):  # one request at a time: the cache's lines in order
        return Teacher("teacher", cache=cache, client=client, concurrency=1)

    cache, client = tmp_path / "cache.jsonl", CountingClient()
    asks = [[{"role": "user", "content": f"q{i} é"}] for i in range(4)]  # é: 2 UTF-8 bytes
    teacher(cache, client).ask_all(asks[:2])
    whole = cache.read_bytes()
    assert whole.endswith('é"}\n'.encode())
    cache.write_bytes(whole[:-4])  # killed mid-write of the second line, mid-character
    with caplog.at_level("WARNING", logger="emotion_lab.data.teacher"):
        answers, stats = teacher(cache, client).ask_all(asks[:3])
    assert "partial last line" in caplog.text
    assert (stats.cached, stats.sent) == (1, 2) and answers[2] == "answer to q2 é"
    # a whole line that is no answer (a hand edit): skipped and counted, never silently
    with cache.open("ab") as f:
        f.write(b"not json\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="emotion_lab.data.teacher"):
        answers, stats = teacher(cache, client).ask_all(asks)
    assert "skipped 1 line(s)" in caplog.text
    # everything answered so far comes from the cache; only the new request is sent
    assert (stats.cached, stats.sent) == (3, 1)
    assert answers == [f"answer to q{i} é" for i in range(4)]
    assert client.asked == ["q0 é", "q1 é", "q1 é", "q2 é", "q3 é"]  # q1: lost to the kill
    _, stats = teacher(cache, client).ask_all(asks)
    assert (stats.cached, stats.sent) == (4, 0)


def test_failures_after_retries_are_counted_not_raised(tmp_path):
    teacher = Teacher("teacher", "http://127.0.0.1:9/v1", cache=tmp_path / "c.jsonl",
                      max_retries=1, timeout=2)
    answers, stats = teacher.ask_all([[{"role": "user", "content": "Emotions: joy"}]])
    assert answers == [None] and stats.failed == 1 and "Connection" in stats.errors[0]


def test_a_teacher_without_a_model_says_what_to_set(tmp_path):
    with pytest.raises(TeacherError, match="teacher.model"):
        Teacher(None, cache=tmp_path / "c.jsonl")


@pytest.mark.parametrize(("text", "reason"), [
    ("Thanks shows gratitude and joy.", None),
    ("Thanks shows gratitude.", "does not name every gold label"),
    ("joy", "too short"),
    ("", "empty"),
    (None, "no answer"),
    ("gratitude and joy " + "word " * 100, "too long"),
])
def test_rationale_filters(text, reason):
    assert check_rationale(text, ["gratitude", "joy"]) == reason
    assert check_rationale("Thanks shows gratitude here.", ["gratitude", "joy"],
                           require_labels="any") is None


def test_template_rationales_quote_the_words_a_minilm_run_relies_on(prepared, goemotions_dir,
                                                                    tmp_path):
    run = tmp_path / "minilm"
    # MiniLM frozen, an MLP head on its cached features: a real classifier in seconds
    train(compose_train_cfg(goemotions_dir, run, "backbone=minilm", "adapter=frozen_head",
                            "adapter.cache_features=true", "model.head.hidden_size=64",
                            "trainer.max_epochs=40", "callbacks.early_stopping=null"))
    report = add_rationales(rationales_cfg(prepared, "source=template",
                                           f"template.run_dir={run}", "max_examples=30"))
    assert report["splits"]["train"]["asked"] == 30
    frame = pd.read_parquet(prepared / "train.parquet")
    kept = [(t, r) for t, r in zip(frame["text"][:30], frame["rationale"][:30], strict=True)
            if r]
    assert len(kept) == report["splits"]["train"]["kept"] >= 20
    quoted_cue = 0
    for text, rationale in kept:
        for quoted, label in re.findall(r"'([^']+)' carries (\w+)", rationale):
            assert all(w in text for w in quoted.split(" ... ")), (quoted, text)
            quoted_cue += any(c in quoted.split(" ... ") for c in CUES[label])
    # the run learned the cue words: most quotes are the gold label's cue word
    assert quoted_cue >= 0.6 * len(kept)
