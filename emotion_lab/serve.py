"""An HTTP service for a trained run (FastAPI + uvicorn; pip install -e ".[serve]").

    python -m emotion_lab.serve run_dir=<run> port=8000     # then open http://127.0.0.1:8000/
    curl -s localhost:8000/analyze -H 'content-type: application/json' \
        -d '{"text": ["Thank you!", "This is awful."], "top_k": 2}'
    curl -s localhost:8000/explain -H 'content-type: application/json' \
        -d '{"text": "Thank you, you made my day!", "emotion": "gratitude"}'

GET / is a demo page (emotion_lab/demo/index.html: one file, no CDN): a text box, the emotions
above their thresholds, every label's score as a bar with its threshold marked, and the words
highlighted by their occlusion importance for a chosen emotion. POST /analyze takes one text
or a list; POST /explain one text (word importances, see emotion_lab/inference/occlusion.py); GET
/labels, GET /health; OpenAPI docs at /docs. Texts longer than max_chars, batches larger than
max_batch and texts with more than max_words scored words are refused with 413; empty texts,
non-string items and unknown emotions with 422, each with a message that says what is wrong.

Under load (docs/serving.md#under-load): with batching=true (the default) the texts of
concurrent requests are scored together by one worker thread (emotion_lab/inference/batcher.py:
at most gather_texts a call, waiting at most max_wait_ms for more), with torch's threads set
to the machine's cores; /explain's passes take a lower-priority lane in chunks. Past
queue_texts queued texts a request gets 503 with Retry-After; a client that goes away has its
queued texts dropped unscored. GET /health reports the queue and the batch sizes seen.
batching=false is the old path: each request scores its texts on a thread of the web server.
runtime=onnx serves an ONNX export (export_dir=, written by `python -m emotion_lab.export
format=onnx quantize=true`) in fp32 or int8 (precision=int8) on ONNX Runtime.
"""

import asyncio
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from emotion_lab.cli import CliError, parse_key_values, run_face
from emotion_lab.errors import PredictError
from emotion_lab.inference.batcher import Batcher, QueueFull
from emotion_lab.inference.occlusion import explain_text, words_of
from emotion_lab.inference.predictor import EmotionClassifier, load_onnx
from emotion_lab.inference.queued import QueuedClassifier
from emotion_lab.settings import Choice, Float, Int

DEFAULTS = {"run_dir": None, "host": "127.0.0.1", "port": 8000, "max_chars": 5000,
            "max_batch": 256, "max_words": 300, "batch_size": 64, "precision": "fp32",
            "runtime": "torch", "export_dir": None, "batching": True, "gather_texts": 128,
            "max_wait_ms": 2.0, "queue_texts": 1024, "threads": 0}
RULES = {"port": Int(0, high=65535), "max_chars": Int(1), "max_batch": Int(1),
         "max_words": Int(1), "batch_size": Int(1),
         "precision": Choice("auto", "fp32", "bf16", "int8"), "runtime": Choice("torch", "onnx"),
         "gather_texts": Int(1), "max_wait_ms": Float(0, 1000), "queue_texts": Int(1),
         "threads": Int(0)}


def demo_page() -> str:
    return (resources.files("emotion_lab") / "demo" / "index.html").read_text(encoding="utf-8")


def create_app(clf: EmotionClassifier, max_chars: int = 5000, max_batch: int = 256,
               max_words: int = 300, batching: bool = True, batcher: Batcher | None = None,
               runtime: str = "torch"):
    """The FastAPI app around a loaded classifier (tests use it with TestClient). With
    `batching`, requests are scored through `batcher` (default: Batcher's defaults over
    `clf`); without, each request scores its own texts on a thread of the web server."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException, Request, Response
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, Field

    class AnalyzeRequest(BaseModel):
        text: Any = Field(description="one text, or a list of texts")
        top_k: int | None = Field(None, ge=1, description="the k most probable labels")
        threshold: float | None = Field(None, gt=0, lt=1, description="one threshold for all")
        all_scores: bool = Field(False, description="also return every label's score")

    class ExplainRequest(BaseModel):
        text: str = Field(description="the text to explain")
        emotion: str | list[str] | None = Field(
            None, description="emotion(s) to explain; default: the predicted ones")
        occlusion: Literal["remove", "mask"] = Field(
            "remove", description="occlude a word by removing it or by the mask token")

    if batching and batcher is None:
        batcher = Batcher(lambda texts, answers: clf.score(texts, answers=answers))
    queued = QueuedClassifier(clf, batcher.start()) if batching else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if batcher is not None:
            batcher.close()

    app = FastAPI(title="emotion_lab", description="Emotions of texts, from a trained run.",
                  lifespan=lifespan)
    app.state.batcher = batcher if batching else None
    page = demo_page()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "labels": len(clf.labels), "device": str(clf.device),
                "runtime": runtime,
                "batching": queued.batcher.health() if queued is not None else None}

    @app.get("/labels")
    def labels() -> dict[str, Any]:
        thresholds = None if clf.thresholds is None else dict(
            zip(clf.labels, map(float, clf.thresholds), strict=True))
        return {"labels": clf.labels, "thresholds": thresholds}

    def analyze_texts(request: AnalyzeRequest) -> list:
        texts = [request.text] if isinstance(request.text, str) else request.text
        if not isinstance(texts, list):
            raise HTTPException(422, "text must be a string or a list of strings")
        if len(texts) > max_batch:
            raise HTTPException(413, f"{len(texts)} texts in one request; the limit is "
                                     f"{max_batch} (max_batch). Split the request.")
        long = [i for i, t in enumerate(texts) if isinstance(t, str) and len(t) > max_chars]
        if long:
            raise HTTPException(413, f"item(s) {long[:10]} longer than {max_chars} characters "
                                     f"(max_chars); shorten them.")
        return texts

    def explain_checks(request: ExplainRequest) -> list[str] | None:
        if len(request.text) > max_chars:
            raise HTTPException(413, f"the text is longer than {max_chars} characters "
                                     f"(max_chars); shorten it.")
        if len(words_of(request.text)) > max_words:
            raise HTTPException(413, f"the text has {len(words_of(request.text))} words to "
                                     f"score, the limit is {max_words} (max_words): each "
                                     f"costs a forward pass. Explain a shorter text.")
        return [request.emotion] if isinstance(request.emotion, str) else request.emotion

    if queued is None:  # the old path: scored on the thread pool, a pass per request
        @app.post("/analyze")
        def analyze(request: AnalyzeRequest) -> dict[str, Any]:
            texts = analyze_texts(request)
            try:
                results = clf.predict(texts, request.top_k, request.threshold,
                                      request.all_scores)
            except PredictError as e:
                raise HTTPException(422, str(e)) from e
            return results[0] if isinstance(request.text, str) else {"results": results}

        @app.post("/explain")
        def explain(request: ExplainRequest) -> dict[str, Any]:
            emotions = explain_checks(request)
            try:
                return explain_text(clf, request.text, emotions, request.occlusion)
            except PredictError as e:
                raise HTTPException(422, str(e)) from e

        return app

    @app.post("/analyze")
    async def analyze_batched(request: AnalyzeRequest, raw: Request) -> Any:
        texts = analyze_texts(request)
        results = await unless_gone(raw, queued.predict(
            texts, request.top_k, request.threshold, request.all_scores))
        if results is None:
            return Response(status_code=499)  # nobody reads it
        # plain JSON types already: JSONResponse skips FastAPI's slower jsonable_encoder
        return JSONResponse(results[0] if isinstance(request.text, str)
                            else {"results": results})

    @app.post("/explain")
    async def explain_batched(request: ExplainRequest, raw: Request) -> Any:
        emotions = explain_checks(request)
        result = await unless_gone(raw, queued.explain(request.text, emotions,
                                                       request.occlusion))
        return Response(status_code=499) if result is None else JSONResponse(result)

    async def unless_gone(raw: Request, work) -> Any:
        """`work`'s result; None (and `work` cancelled: its queued texts leave the queue
        unscored) if the client disconnects first."""
        task, gone = asyncio.ensure_future(work), asyncio.ensure_future(disconnected(raw))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not task.done():
            task.cancel()
            return None
        try:
            return task.result()
        except QueueFull as e:
            raise HTTPException(503, str(e), headers={"Retry-After": str(e.retry_after)}) \
                from e
        except PredictError as e:
            raise HTTPException(422, str(e)) from e

    return app


async def disconnected(raw) -> None:
    """Returns when the client goes away (the ASGI server's http.disconnect; the body has
    been read already, so nothing else arrives)."""
    while (await raw.receive())["type"] != "http.disconnect":
        pass


def load(args: dict[str, Any], threads: int | None = None) -> EmotionClassifier:
    """The classifier the settings ask for; `threads`: ONNX Runtime's intra-op threads (its
    default counts the machine's cores, not the ones this process may use)."""
    if args["runtime"] == "onnx":
        if not args["export_dir"]:
            raise CliError("runtime=onnx needs export_dir=... (python -m emotion_lab.export "
                           "run_dir=<run> format=onnx out=<dir> quantize=true)")
        if args["precision"] not in ("fp32", "int8"):
            raise CliError(f"precision={args['precision']}: runtime=onnx runs fp32 or int8")
        file = "model.int8.onnx" if args["precision"] == "int8" else "model.onnx"
        clf = load_onnx(args["export_dir"], file, batch_size=args["batch_size"])
        if threads:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            clf.model.session = ort.InferenceSession(
                str(Path(args["export_dir"]) / file), options, providers=["CPUExecutionProvider"])
        return clf
    if not args["run_dir"]:
        raise CliError("run_dir=... required (run_dir: a directory written by python -m "
                       "emotion_lab.train)")
    if args["precision"] == "int8":
        raise CliError("precision=int8: int8 is ONNX Runtime's (runtime=onnx export_dir=...)")
    return EmotionClassifier.from_run(args["run_dir"], batch_size=args["batch_size"],
                                      precision=args["precision"])


def run(argv: list[str]) -> None:
    args = parse_key_values(argv, DEFAULTS, required=(), rules=RULES)
    try:
        import uvicorn
    except ImportError as e:
        raise CliError('serving needs FastAPI and uvicorn: pip install -e ".[serve]"') from e
    if args["batching"] and args["queue_texts"] < max(args["max_batch"], args["max_words"] + 1):
        raise CliError(f"queue_texts={args['queue_texts']}: at least max_batch "
                       f"({args['max_batch']}) and max_words + 1 ({args['max_words'] + 1}), "
                       f"or the largest request would never fit")
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = args["threads"] or cores or 1
    torch.set_num_threads(threads)
    clf = load(args, threads)
    batcher = Batcher(lambda texts, answers: clf.score(texts, answers=answers),
                      args["gather_texts"], args["max_wait_ms"], args["queue_texts"])
    app = create_app(clf, args["max_chars"], args["max_batch"], args["max_words"],
                     args["batching"], batcher, args["runtime"])
    print(f"demo page: http://{args['host']}:{args['port']}/", flush=True)
    uvicorn.run(app, host=args["host"], port=args["port"])


def main() -> int:
    return run_face(run)


if __name__ == "__main__":
    sys.exit(main())
