"""The service under load, in one invocation on one machine: N concurrent clients (1, 4, 16,
64), one text per POST /analyze, for a fixed time against
  (a) `python -m emotion_lab.serve` with batching on (the default),
  (b) the same with batching off (batching=false: each request scores its own text on a
      thread of the web server, the service as it was before issue 27),
  (c) transformers' text-classification pipeline behind the same FastAPI app (an HF export
      of the run; its thresholds applied the same way),
and, with --onnx, (a) on the ONNX Runtime export in fp32 and int8. Per row: requests/s,
latency p50/p95/p99, errors, and the batch sizes the server's /health saw. Also the offline
batched throughput of each runtime (`clf.scores(texts)`, batches of 64) on the same core.

    python benchmarks/serve_load.py --run outputs/issue27/minilm_cls --onnx

The clients are wrk (a compiled load tool: apt-get install wrk), pinned with sched_setaffinity
to other cores than the server's, so they do not eat its cores: the server (and the offline
measurement) get --server-cores (default: core 0, one torch thread), wrk gets the rest. The
run needs HF's own head (model.head.pooling=cls) for the pipeline's export. Texts: the run's
test split (test_texts.json), one per request in turn. Writes
benchmarks/results/serve_load.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from summarize_runs import cpu_name  # noqa: E402

LUA = """local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "/analyze", nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, ' ..
    '"p95_us": %%d, "p99_us": %%d, "max_us": %%d, "errors_status": %%d, "errors_connect": %%d, ' ..
    '"errors_read": %%d, "errors_write": %%d, "errors_timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def pinned(cores: set[int]):
    return lambda: os.sched_setaffinity(0, cores)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def start(command: list[str], port: int, cores: set[int], log: Path) -> subprocess.Popen:
    # a file, not a pipe: uvicorn's access log would fill a pipe nobody reads, and block
    server = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                              preexec_fn=pinned(cores))
    deadline = time.monotonic() + 180
    while True:
        try:
            get_json(f"http://127.0.0.1:{port}/health")
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(log.read_text(errors="replace")[-3000:]) from None
            time.sleep(0.5)


def wrk(port: int, clients: int, seconds: float, script: Path,
        cores: set[int]) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{round(seconds)}s", "--timeout", "30s",
                          "-s", str(script), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True, preexec_fn=pinned(cores))
    raw = json.loads(re.search(r"WRKJSON (.*)", out.stdout).group(1))
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    seconds = raw["duration_us"] / 1e6
    return {"clients": clients, "requests": raw["requests"], "seconds": seconds,
            "requests_per_second": (raw["requests"] - raw["errors_status"]) / seconds,
            **{f"latency_ms_{p}": raw[f"{p}_us"] / 1000 for p in ("p50", "p95", "p99", "max")},
            "errors": errors, "error_kinds": {k[7:]: v for k, v in raw.items()
                                              if k.startswith("errors_") and v}}


def load_server(args: argparse.Namespace, name: str, command: list[str], script: Path,
                server_cores: set[int], client_cores: set[int]) -> list[dict[str, Any]]:
    port = free_port()
    server = start([*command, f"port={port}"] if command[1] == "-m"
                   else [*command, "--port", str(port)], port, server_cores,
                   script.parent / f"server_{port}.log")
    rows = []
    try:
        wrk(port, 16, args.warmup, script, client_cores)  # untimed: caches, allocator
        for clients in args.clients:
            before = get_json(f"http://127.0.0.1:{port}/health").get("batching")
            row = {"server": name, **wrk(port, clients, args.seconds, script, client_cores)}
            after = get_json(f"http://127.0.0.1:{port}/health").get("batching")
            if after:
                batches = after["batches"] - before["batches"]
                row["mean_batch_texts"] = (after["scored_texts"] - before["scored_texts"]) \
                    / max(batches, 1)
                row["batch_histogram_total"] = after["batch_sizes"]["histogram"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def offline(args: argparse.Namespace, runtime: str, cores: set[int]) -> dict[str, float]:
    """Texts/s of `clf.scores`: all texts in one call (sorted by token count into batches of
    64: the offline figure), and in calls of 16 texts in arrival order (random lengths: what
    16 clients let a server batch)."""
    out = subprocess.run([sys.executable, __file__, "--offline", runtime, "--run", str(args.run),
                          "--threads", str(len(cores)), "--export", str(args.export_dir)],
                         capture_output=True, text=True, check=True, preexec_fn=pinned(cores))
    return {"all_sorted": float(re.search(r"OFFLINE ([\d.]+)", out.stdout).group(1)),
            "chunks_of_16": float(re.search(r"CHUNKS16 ([\d.]+)", out.stdout).group(1))}


def load_clf(runtime: str, run: Path, export: Path, threads: int):
    """As the server loads it (emotion_lab.serve.load, ONNX Runtime's threads too)."""
    from emotion_lab.serve import DEFAULTS, load

    return load(DEFAULTS | {"run_dir": str(run), "runtime": runtime.split("-")[0],
                            "export_dir": str(export / "onnx"),
                            "precision": "int8" if runtime == "onnx-int8" else "fp32"}, threads)


def offline_throughput(runtime: str, run: Path, export: Path, threads: int) -> None:
    import torch

    from emotion_lab.rundir import read_json

    torch.set_num_threads(threads)
    clf = load_clf(runtime, run, export, threads)
    texts = read_json(run / "test_texts.json")[:2000]
    clf.scores(texts[:256])  # warm-up
    start = time.perf_counter()
    probs = clf.scores(texts)
    print(f"OFFLINE {len(texts) / (time.perf_counter() - start):.3f}")
    start = time.perf_counter()  # what a server can batch: texts as they come, 16 at a time
    for at in range(0, 1024, 16):
        clf.scores(texts[at:at + 16])
    print(f"CHUNKS16 {1024 / (time.perf_counter() - start):.3f}")
    import numpy as np

    np.save(export / f"{runtime}_decisions.npy", clf.decide(probs))


def serve_pipeline(run: Path, export: Path, port: int, threads: int) -> None:
    """transformers' pipeline behind emotion_lab's FastAPI app (its old, unbatched path)."""
    import numpy as np
    import torch
    import uvicorn
    from transformers import pipeline

    from emotion_lab.inference.predictor import EmotionClassifier
    from emotion_lab.serve import create_app

    torch.set_num_threads(threads)
    clf = EmotionClassifier.from_run(run)  # labels, thresholds, the decision; not its model
    pipe = pipeline("text-classification", model=str(export / "hf"), top_k=None,
                    function_to_apply="sigmoid", device="cpu")

    class PipelineClassifier:
        labels, thresholds, device = clf.labels, clf.thresholds, "cpu (transformers pipeline)"

        def predict(self, texts, top_k=None, threshold=None, all_scores=False):
            texts = clf.check_texts(texts)
            rows = pipe(texts, truncation=True, max_length=clf.max_length)
            probs = np.array([[{d["label"]: d["score"] for d in row}[name]
                               for name in clf.labels] for row in rows], dtype=np.float32)
            return clf.results(probs, {}, top_k, threshold, all_scores)

    app = create_app(PipelineClassifier(), batching=False, runtime="transformers pipeline")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def machine() -> dict[str, Any]:
    import torch

    top = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True,
                         text=True).stdout.splitlines()[1:6]
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__,
            "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "load_average_at_start": os.getloadavg(), "top_processes_at_start": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=4)
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")],
                        default=[1, 4, 16, 64])
    parser.add_argument("--server-cores", type=lambda s: {int(c) for c in s.split(",")},
                        default={0})
    parser.add_argument("--onnx", action="store_true", help="also the ONNX fp32 and int8 rows")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_load.json")
    parser.add_argument("--offline", help=argparse.SUPPRESS)
    parser.add_argument("--serve-pipeline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.offline:
        return offline_throughput(args.offline, args.run, args.export, args.threads)
    if args.serve_pipeline:
        return serve_pipeline(args.run, args.export, args.port, args.threads)

    from emotion_lab.export import export_hf, export_onnx
    from emotion_lab.rundir import read_json

    server_cores = args.server_cores
    client_cores = set(os.sched_getaffinity(0)) - server_cores
    if not client_cores:
        sys.exit("error: no core left for the clients; give --server-cores fewer cores")
    threads = str(len(server_cores))
    texts = read_json(args.run / "test_texts.json")[:2000]
    result: dict[str, Any] = {
        "machine": machine(), "run": str(args.run), "texts": len(texts),
        "seconds_per_row": args.seconds,
        "isolation": f"server (and the offline measurement) pinned to cores "
                     f"{sorted(server_cores)} with {threads} torch thread(s); wrk (-t1) pinned "
                     f"to cores {sorted(client_cores)} (os.sched_setaffinity)",
        "server_settings": "python -m emotion_lab.serve defaults: gather_texts=128, "
                           "max_wait_ms=2, queue_texts=1024, batch_size=64, precision=fp32"}
    with tempfile.TemporaryDirectory() as tmp:
        args.export_dir = Path(tmp)
        result["export_checks"] = {"hf": export_hf(args.run, args.export_dir / "hf")}
        result["export_checks"]["hf"].pop("out", None)
        runtimes = ["torch"]
        if args.onnx:
            result["export_checks"]["onnx"] = export_onnx(args.run, args.export_dir / "onnx",
                                                          True, False, 18)
            result["export_checks"]["onnx"].pop("out", None)
            runtimes += ["onnx", "onnx-int8"]
        script = args.export_dir / "post.lua"
        script.write_text(LUA % ", ".join(f"[==[{json.dumps({'text': t})}]==]" for t in texts),
                          encoding="utf-8")
        result["offline_texts_per_second"] = {r: offline(args, r, server_cores)
                                              for r in runtimes}
        print(json.dumps(result["offline_texts_per_second"]), flush=True)
        import numpy as np

        reference = np.load(args.export_dir / "torch_decisions.npy")
        result["same_label_sets_as_torch_fp32"] = {
            r: float((np.load(args.export_dir / f"{r}_decisions.npy") == reference)
                     .all(axis=1).mean()) for r in runtimes}
        serve = [sys.executable, "-m", "emotion_lab.serve", f"threads={threads}"]
        servers = [("batching on", [*serve, f"run_dir={args.run}"]),
                   ("batching off", [*serve, f"run_dir={args.run}", "batching=false"]),
                   ("transformers pipeline", [sys.executable, __file__, "--serve-pipeline",
                                              "--run", str(args.run), "--export",
                                              str(args.export_dir), "--threads", threads])]
        if args.onnx:
            onnx = [*serve, "runtime=onnx", f"export_dir={args.export_dir / 'onnx'}"]
            servers += [("batching on, ONNX fp32", onnx),
                        ("batching on, ONNX int8", [*onnx, "precision=int8"])]
        rows = []
        for name, command in servers:
            rows += load_server(args, name, command, script, server_cores, client_cores)
    result["rows"] = rows
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["targets_at_16_clients"] = targets(rows, result["offline_texts_per_second"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(table(rows, result["offline_texts_per_second"]))


def targets(rows: list[dict[str, Any]], offline_rates: dict[str, float]) -> dict[str, Any]:
    at = {r["server"]: r for r in rows if r["clients"] == 16}
    on, off = at.get("batching on"), at.get("batching off")
    if not (on and off):
        return {}
    return {"x_requests_per_second_vs_batching_off": on["requests_per_second"]
            / off["requests_per_second"],
            "share_of_offline_throughput": on["requests_per_second"]
            / offline_rates["torch"]["all_sorted"],
            "share_of_offline_chunks_of_16": on["requests_per_second"]
            / offline_rates["torch"]["chunks_of_16"],
            "p99_share_of_batching_off": on["latency_ms_p99"] / off["latency_ms_p99"],
            "errors_batching_on": sum(r["errors"] for r in rows if r["server"] == "batching on")}


def table(rows: list[dict[str, Any]], offline_rates: dict[str, float]) -> str:
    lines = ["| server | clients | requests/s | p50 ms | p95 ms | p99 ms | errors | "
             "mean batch |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        batch = f"{r['mean_batch_texts']:.1f}" if "mean_batch_texts" in r else "1"
        lines.append(f"| {r['server']} | {r['clients']} | {r['requests_per_second']:.0f} | "
                     f"{r['latency_ms_p50']:.0f} | {r['latency_ms_p95']:.0f} | "
                     f"{r['latency_ms_p99']:.0f} | {r['errors']} | {batch} |")
    lines.append("")
    lines += [f"offline batched throughput, {k}: {v['all_sorted']:.0f} texts/s (all texts "
              f"sorted, batches of 64), {v['chunks_of_16']:.0f} (calls of 16 in arrival order)"
              for k, v in offline_rates.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
