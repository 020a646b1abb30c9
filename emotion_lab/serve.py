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
"""

import sys
from importlib import resources
from typing import Any, Literal

from emotion_lab.cli import CliError, parse_key_values, run_face
from emotion_lab.errors import PredictError
from emotion_lab.inference.occlusion import explain_text, words_of
from emotion_lab.inference.predictor import EmotionClassifier
from emotion_lab.settings import Choice, Int

DEFAULTS = {"run_dir": None, "host": "127.0.0.1", "port": 8000, "max_chars": 5000,
            "max_batch": 256, "max_words": 300, "batch_size": 64, "precision": "fp32"}
RULES = {"port": Int(0, high=65535), "max_chars": Int(1), "max_batch": Int(1),
         "max_words": Int(1), "batch_size": Int(1), "precision": Choice("auto", "fp32", "bf16")}


def demo_page() -> str:
    return (resources.files("emotion_lab") / "demo" / "index.html").read_text(encoding="utf-8")


def create_app(clf: EmotionClassifier, max_chars: int = 5000, max_batch: int = 256,
               max_words: int = 300):
    """The FastAPI app around a loaded classifier (tests use it with TestClient)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse
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

    app = FastAPI(title="emotion_lab", description="Emotions of texts, from a trained run.")
    page = demo_page()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "labels": len(clf.labels), "device": str(clf.device)}

    @app.get("/labels")
    def labels() -> dict[str, Any]:
        thresholds = None if clf.thresholds is None else dict(
            zip(clf.labels, map(float, clf.thresholds), strict=True))
        return {"labels": clf.labels, "thresholds": thresholds}

    @app.post("/analyze")
    def analyze(request: AnalyzeRequest) -> dict[str, Any]:
        single = isinstance(request.text, str)
        texts = [request.text] if single else request.text
        if not isinstance(texts, list):
            raise HTTPException(422, "text must be a string or a list of strings")
        if len(texts) > max_batch:
            raise HTTPException(413, f"{len(texts)} texts in one request; the limit is "
                                     f"{max_batch} (max_batch). Split the request.")
        long = [i for i, t in enumerate(texts) if isinstance(t, str) and len(t) > max_chars]
        if long:
            raise HTTPException(413, f"item(s) {long[:10]} longer than {max_chars} characters "
                                     f"(max_chars); shorten them.")
        try:
            results = clf.predict(texts, request.top_k, request.threshold, request.all_scores)
        except PredictError as e:
            raise HTTPException(422, str(e)) from e
        return results[0] if single else {"results": results}

    @app.post("/explain")
    def explain(request: ExplainRequest) -> dict[str, Any]:
        if len(request.text) > max_chars:
            raise HTTPException(413, f"the text is longer than {max_chars} characters "
                                     f"(max_chars); shorten it.")
        if len(words_of(request.text)) > max_words:
            raise HTTPException(413, f"the text has {len(words_of(request.text))} words to "
                                     f"score, the limit is {max_words} (max_words): each "
                                     f"costs a forward pass. Explain a shorter text.")
        emotions = [request.emotion] if isinstance(request.emotion, str) else request.emotion
        try:
            return explain_text(clf, request.text, emotions, request.occlusion)
        except PredictError as e:
            raise HTTPException(422, str(e)) from e

    return app


def run(argv: list[str]) -> None:
    args = parse_key_values(argv, DEFAULTS, rules=RULES)
    try:
        import uvicorn
    except ImportError as e:
        raise CliError('serving needs FastAPI and uvicorn: pip install -e ".[serve]"') from e
    clf = EmotionClassifier.from_run(args["run_dir"], batch_size=args["batch_size"],
                                     precision=args["precision"])
    app = create_app(clf, args["max_chars"], args["max_batch"], args["max_words"])
    print(f"demo page: http://{args['host']}:{args['port']}/", flush=True)
    uvicorn.run(app, host=args["host"], port=args["port"])


def main() -> int:
    return run_face(run)


if __name__ == "__main__":
    sys.exit(main())
