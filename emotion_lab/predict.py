"""Predict emotions from the shell, for one text or a file of them.

    python -m emotion_lab.predict run_dir=<run> text="Thank you so much!"
    python -m emotion_lab.predict run_dir=<run> input=comments.csv text_column=body \
        output=predictions.jsonl
    python -m emotion_lab.predict run_dir=<run> input=lines.txt output=out.csv all_scores=true

Inputs: .txt (one text per line), .csv, .tsv, .jsonl, .parquet; outputs: .jsonl, .csv,
.parquet. Every input column travels to the output, followed by `emotions` (the predicted
labels, best first), `emotion_scores`, and with all_scores=true one `score_<label>` column
per label (.jsonl: a `scores` object). The output is written under a temporary name and
renamed when complete, so a failed run never leaves a file that looks finished.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from emotion_lab.cli import CliError, parse_key_values, run_face
from emotion_lab.data.files import LINE_OFFSETS, decode_text, read_table
from emotion_lab.data.types import DataError
from emotion_lab.inference.predictor import EmotionClassifier
from emotion_lab.settings import Choice, Float, Int

DEFAULTS = {"run_dir": None, "text": None, "input": None, "output": None,
            "text_column": "text", "top_k": 0, "threshold": 0.0, "all_scores": False,
            "skip_empty": False, "batch_size": 64, "precision": "fp32"}
OUTPUTS = (".jsonl", ".csv", ".parquet")
RULES = {"top_k": Int(0), "threshold": Float(0, 1), "batch_size": Int(1),
         "precision": Choice("auto", "fp32", "bf16")}  # top_k=0, threshold=0: the run's own


def read_input(path: Path, text_column: str) -> tuple[pd.DataFrame, Any]:
    """(the input table, a function naming row i as 'line n' or 'row i')."""
    if path.suffix.lower() == ".txt":
        lines = decode_text(path).rstrip("\n").split("\n")
        return pd.DataFrame({text_column: lines}), lambda i: f"line {i + 1}"
    frame = read_table(path)
    if text_column not in frame.columns:
        raise DataError(f"{path}: no column {text_column!r}; its columns are "
                        f"{', '.join(map(str, frame.columns))}. Name one with text_column=...")
    offset = LINE_OFFSETS[path.suffix.lower()]
    return frame, (lambda i: f"row {i}") if offset is None else (lambda i: f"line {i + offset}")


def check_column(frame: pd.DataFrame, column: str, path: Path, at, skip_empty: bool) -> list[int]:
    """Indices of the rows to score; bad rows are errors (empty ones skipped if asked)."""
    values = frame[column].tolist()
    not_text = [i for i, v in enumerate(values) if not isinstance(v, str) and not pd.isna(v)]
    if not_text:
        raise DataError(f"{path}, {at(not_text[0])}: {column} is "
                        f"{type(values[not_text[0]]).__name__}, not text "
                        f"({len(not_text)} such row(s)).")
    empty = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if empty and not skip_empty:
        raise DataError(f"{path}, {', '.join(at(i) for i in empty[:5])}: empty text "
                        f"({len(empty)} row(s)). Remove them, or pass skip_empty=true to keep "
                        f"them in the output with no emotions.")
    return [i for i in range(len(values)) if i not in set(empty)]


def output_table(frame: pd.DataFrame, results: dict[int, dict], labels: list[str],
                 nested: bool) -> pd.DataFrame:
    out = frame.copy()
    empty = {"emotions": [], "scores": None}
    rows = [results.get(i, empty) for i in range(len(frame))]
    names = [[e["label"] for e in r["emotions"]] for r in rows]
    scores = [[round(e["score"], 6) for e in r["emotions"]] for r in rows]
    for key in ("rationale", "answer"):  # generative runs: what the model wrote
        if any(key in r for r in rows):
            out[key] = [r.get(key, "") for r in rows]
    if nested:
        out["emotions"], out["emotion_scores"] = names, scores
        if any(r.get("scores") for r in rows):
            out["scores"] = [r.get("scores") for r in rows]
        return out
    out["emotions"] = [",".join(n) for n in names]
    out["emotion_scores"] = [",".join(f"{s:.4f}" for s in row) for row in scores]
    if any(r.get("scores") for r in rows):
        for label in labels:
            out[f"score_{label}"] = [r["scores"][label] if r.get("scores") else None
                                     for r in rows]
    return out


def write_output(table: pd.DataFrame, path: Path) -> None:
    """Write under a temporary name, then rename: a crash leaves no complete-looking file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        if path.suffix.lower() == ".jsonl":
            partial.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                       for r in table.to_dict(orient="records")),
                               encoding="utf-8")
        elif path.suffix.lower() == ".csv":
            table.to_csv(partial, index=False)
        else:
            table.to_parquet(partial, index=False)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def run(argv: list[str]) -> Any:
    args = parse_key_values(argv, DEFAULTS, rules=RULES)
    if (args["text"] is None) == (args["input"] is None):
        raise CliError("give either text=\"...\" or input=<file> (with output=<file>)")
    output = Path(args["output"]) if args["output"] else None
    if args["input"] is not None and (output is None or output.suffix.lower() not in OUTPUTS):
        raise CliError(f"input=... needs output=<file> ending in {', '.join(OUTPUTS)}")
    options = {"top_k": args["top_k"] or None, "threshold": args["threshold"] or None,
               "all_scores": args["all_scores"]}
    clf = EmotionClassifier.from_run(args["run_dir"], batch_size=args["batch_size"],
                                     precision=args["precision"])
    if args["text"] is not None:
        result = clf.predict([args["text"]], **options)[0]
        print(json.dumps({"text": args["text"], **result}, ensure_ascii=False))
        return result
    path = Path(args["input"])
    frame, at = read_input(path, args["text_column"])
    keep = check_column(frame, args["text_column"], path, at, args["skip_empty"])
    texts = frame[args["text_column"]].tolist()
    with tqdm(total=len(keep), desc=f"predicting {path.name}", unit="text") as bar:
        predicted = clf.predict([texts[i] for i in keep], progress=bar.update, **options)
    table = output_table(frame, dict(zip(keep, predicted, strict=True)), clf.labels,
                         nested=output.suffix.lower() != ".csv")
    write_output(table, output)
    print(f"{len(keep)} of {len(frame)} texts predicted -> {output}", file=sys.stderr)
    return output


def main() -> int:
    return run_face(run)


if __name__ == "__main__":
    sys.exit(main())
