"""The service under load: dynamic batching, the queue bound, clients that go away, and the
explain lane (emotion_lab/inference/batcher.py behind emotion_lab/serve.py)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np
import pytest
from conftest import compose_train_cfg

from emotion_lab.inference.batcher import Batcher, bucket
from emotion_lab.inference.predictor import EmotionClassifier
from emotion_lab.train import train

pytest.importorskip("fastapi", reason='pip install -e ".[serve]"')
httpx = pytest.importorskip("httpx")

from emotion_lab.serve import create_app  # noqa: E402

TEXTS = ["so happy", "thanks, grateful for the hug", "rage, this is annoying", "sad today",
         "I wonder what that was", "the weather is ok", "so proud and hopeful",
         "disgusting and gross", "scared, really afraid of it", "love you darling"]


@pytest.fixture(scope="module")
def clf(goemotions_dir, tmp_path_factory) -> EmotionClassifier:
    out = tmp_path_factory.mktemp("serve") / "run"
    train(compose_train_cfg(goemotions_dir, out))
    return EmotionClassifier.from_run(out, batch_size=64)


class Gate:
    """A scoring function that holds its first call until opened; counts the texts scored."""

    def __init__(self, clf: EmotionClassifier) -> None:
        self.clf, self.entered, self.opened = clf, threading.Event(), threading.Event()
        self.calls: list[int] = []

    def __call__(self, texts: list[str], answers: bool):
        self.entered.set()
        assert self.opened.wait(60)
        self.calls.append(len(texts))
        return self.clf.score(texts, answers=answers)


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def asgi_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")


def test_concurrent_requests_are_batched_and_score_as_one_by_one(clf):
    batcher = Batcher(lambda texts, answers: clf.score(texts, answers=answers),
                      gather_texts=64, max_wait_ms=50)
    app = create_app(clf, batcher=batcher)
    bodies = [{"text": TEXTS[i % 10] if i % 3 else TEXTS[i % 10:i % 10 + 3],
               "all_scores": True} for i in range(48)]

    async def fire():
        async with asgi_client(app) as client:
            return await asyncio.gather(*(client.post("/analyze", json=b) for b in bodies))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * len(bodies)
    for body, response in zip(bodies, responses, strict=True):
        texts = [body["text"]] if isinstance(body["text"], str) else body["text"]
        got = [response.json()] if isinstance(body["text"], str) else response.json()["results"]
        for text, result in zip(texts, got, strict=True):
            alone = clf.predict(text, all_scores=True)[0]  # one text, one forward pass
            assert [e["label"] for e in result["emotions"]] == [
                e["label"] for e in alone["emotions"]]
            np.testing.assert_allclose([result["scores"][k] for k in clf.labels],
                                       [alone["scores"][k] for k in clf.labels], atol=1e-5)
    health = batcher.health()
    texts = sum(1 if isinstance(b["text"], str) else len(b["text"]) for b in bodies)
    assert health["scored_texts"] == texts and health["queue_texts"] == 0
    assert health["batches"] < len(bodies) and health["batch_sizes"]["recent_max"] > 1
    batcher.close()


def test_past_the_queue_bound_only_503_with_retry_after(clf):
    gate = Gate(clf)
    batcher = Batcher(gate, gather_texts=4, max_wait_ms=0, queue_texts=10)
    app = create_app(clf, batcher=batcher)

    async def fire():
        async with asgi_client(app) as client:
            first = asyncio.ensure_future(client.post("/analyze", json={"text": "so happy"}))
            await asyncio.to_thread(gate.entered.wait, 30)  # the worker holds it
            below = [asyncio.ensure_future(client.post("/analyze", json={"text": t}))
                     for t in TEXTS]  # ten texts: the queue is full, not past it
            await asyncio.to_thread(wait_until, lambda: batcher.queued == 10)
            over = await asyncio.gather(*(client.post("/analyze", json={"text": t})
                                          for t in TEXTS[:3]))
            health = (await client.get("/health")).json()["batching"]
            gate.opened.set()
            return await first, await asyncio.gather(*below), over, health

    first, below, over, health = asyncio.run(fire())
    assert [r.status_code for r in over] == [503] * 3
    assert all(int(r.headers["retry-after"]) >= 1 for r in over)
    assert "queue_texts" in over[0].json()["detail"]
    assert first.status_code == 200 and [r.status_code for r in below] == [200] * 10
    assert [[e["label"] for e in r.json()["emotions"]] for r in below] == [
        [e["label"] for e in clf.predict(t)[0]["emotions"]] for t in TEXTS]
    assert health["queue_texts"] == 10 and health["rejected_requests"] == 3
    assert sum(gate.calls) == 11  # the rejected texts were never scored
    batcher.close()


@pytest.fixture()
def live(clf):
    """The app on a real uvicorn (in this process, so the test reads its batcher) with a
    gated scorer: (base URL, batcher, gate)."""
    uvicorn = pytest.importorskip("uvicorn")
    gate = Gate(clf)
    batcher = Batcher(gate, gather_texts=4, max_wait_ms=0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(clf, batcher=batcher), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started)
    yield f"http://127.0.0.1:{port}", batcher, gate
    gate.opened.set()
    server.should_exit = True
    thread.join(timeout=30)


def test_a_client_that_disconnects_costs_nothing_more(live):
    url, batcher, gate = live
    held = threading.Thread(target=httpx.post, args=(f"{url}/analyze",),
                            kwargs={"json": {"text": "so happy"}, "timeout": 60})
    held.start()
    assert gate.entered.wait(30)  # the worker is busy with it
    with pytest.raises(httpx.ReadTimeout):  # gives up waiting and closes the connection
        httpx.post(f"{url}/analyze", json={"text": TEXTS[:5]}, timeout=1.0)
    wait_until(lambda: batcher.dropped == 5, 15)
    assert batcher.queued == 0
    gate.opened.set()
    held.join(timeout=30)
    after = httpx.post(f"{url}/analyze", json={"text": "sad today"}, timeout=30)
    assert after.status_code == 200
    assert gate.calls == [1, 1] and batcher.scored == 2  # the five texts were never scored
    assert httpx.get(f"{url}/health").json()["batching"]["dropped_texts"] == 5


def test_explain_goes_through_its_lane_and_analyze_goes_first(clf):
    order: list[tuple[bool, int]] = []
    gate = Gate(clf)

    def score(texts, answers):
        order.append((answers, len(texts)))
        return gate(texts, answers)

    batcher = Batcher(score, gather_texts=8, max_wait_ms=0)
    app = create_app(clf, batcher=batcher)
    text = "so happy and grateful, thanks, what a brilliant funny hug"

    async def fire():
        async with asgi_client(app) as client:
            first = asyncio.ensure_future(client.post("/analyze", json={"text": "ok"}))
            await asyncio.to_thread(gate.entered.wait, 30)
            explain = asyncio.ensure_future(client.post("/explain", json={"text": text}))
            await asyncio.to_thread(wait_until, lambda: batcher.lanes["explain"])
            analyze = asyncio.ensure_future(client.post("/analyze", json={"text": TEXTS[:2]}))
            await asyncio.to_thread(wait_until, lambda: batcher.lanes["analyze"])
            gate.opened.set()
            return await first, await explain, await analyze

    first, explain, analyze = asyncio.run(fire())
    assert first.status_code == explain.status_code == analyze.status_code == 200
    # the analyze request queued after the explain chunk is scored before it
    assert order[:3] == [(True, 1), (True, 2), (False, 8)]
    assert [n for answers, n in order if not answers] == [8, 1]  # 9 texts, chunks of <= 8
    expected = pytest.importorskip("emotion_lab.inference.occlusion").explain_text(clf, text)
    assert explain.json()["predicted"] == expected["predicted"]
    for emotion, got in explain.json()["emotions"].items():
        np.testing.assert_allclose([w["importance"] for w in got["words"]],
                                   [w["importance"] for w in
                                    expected["emotions"][emotion]["words"]], atol=1e-5)
    batcher.close()


def test_health_reports_the_queue_and_batch_sizes(clf):
    from fastapi.testclient import TestClient

    client = TestClient(create_app(clf))
    client.post("/analyze", json={"text": TEXTS[:5]})
    batching = client.get("/health").json()["batching"]
    assert batching["queue_texts"] == 0 and batching["scored_texts"] == 5
    assert batching["batch_sizes"]["histogram"] == {"4-7": 1}
    assert [bucket(n) for n in (1, 2, 3, 8, 100)] == ["1", "2-3", "2-3", "8-15", "64-127"]
    assert TestClient(create_app(clf, batching=False)).get("/health").json()["batching"] is None


@pytest.mark.parametrize(("argv", "says"), [
    (["precision=int8"], "int8 is ONNX Runtime's"),
    (["runtime=onnx"], "runtime=onnx needs export_dir"),
    (["runtime=onnx", "export_dir=x", "precision=bf16"], "runtime=onnx runs fp32 or int8"),
    (["queue_texts=10"], "queue_texts=10: at least max_batch"),
    (["runtime=tensorrt"], "expected one of torch, onnx"),
])
def test_serve_settings_are_checked(clf, argv, says, capsys):
    from emotion_lab.serve import run, run_face

    assert run_face(run, ["run_dir=.", *argv]) == 2
    assert says in capsys.readouterr().err
