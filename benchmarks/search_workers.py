"""Two workers on one PostgreSQL study (issue 26): `python -m emotion_lab.search
search.workers=2` on a fresh database, then what the storage holds of each trial (its worker,
params, state, value, per-epoch reports, start and end) written as JSON.

    scripts/cluster.sh                        # PostgreSQL on localhost
    python benchmarks/search_workers.py       # -> benchmarks/results/issue26_search_workers.json

MiniLM + LoRA (hparams_search=minilm_lora) on the GoEmotions release shipped in the package,
1,000 training and 400 evaluation examples, 1-2 epochs a trial: the mechanics of a shared
study in a few minutes on 2 cores, not a search worth its result. The database
(EMOTION_LAB_POSTGRES_URL's server, a new database) is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVER = os.environ.get("EMOTION_LAB_POSTGRES_URL",
                        "postgresql://emotion_lab:emotion_lab@localhost/emotion_lab")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks/results/issue26_search_workers.json")
    parser.add_argument("--dir", type=Path, default=ROOT / "outputs/bench/search_workers")
    args = parser.parse_args()
    name = f"emotion_lab_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(SERVER).set(database=name)
    overrides = ["hparams_search=minilm_lora", "logger=none", "callbacks.progress_bar=null",
                 "data.max_train_examples=1000", "data.max_eval_examples=400",
                 "search.params={trainer.max_epochs:{type:int,low:1,high:2}}",
                 f"search.n_trials={args.trials}", f"search.workers={args.workers}",
                 f"search.dir={args.dir}"]
    try:
        start, load = time.monotonic(), [os.getloadavg()[0]]
        done = subprocess.run([sys.executable, "-m", "emotion_lab.search", *overrides,
                               f"search.storage={url.render_as_string(hide_password=False)}"],
                              cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - start
        load.append(os.getloadavg()[0])
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            return done.returncode
        trials = optuna.load_study(study_name="minilm_lora", storage=url.render_as_string(
            hide_password=False)).trials
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    first = min(t.datetime_start for t in trials)
    workers = sorted({t.user_attrs["worker"] for t in trials},
                     key=lambda w: min(t.number for t in trials if t.user_attrs["worker"] == w))
    rows = [{"number": t.number, "worker": workers.index(t.user_attrs["worker"]),
             "process": t.user_attrs["worker"], "state": t.state.name, "value": t.value,
             "params": t.params, "reports": {str(k): v for k, v in
                                             sorted(t.intermediate_values.items())},
             "start_s": round((t.datetime_start - first).total_seconds(), 1),
             "end_s": round((t.datetime_complete - first).total_seconds(), 1)
             if t.datetime_complete else None} for t in trials]
    overlap = sum(1 for a in rows for b in rows if a["worker"] < b["worker"]
                  and a["end_s"] and b["end_s"]
                  and a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"])
    result = {
        "what": f"python -m emotion_lab.search {' '.join(overrides)} "
                f"search.storage=postgresql://.../<fresh database>",
        "command": "python benchmarks/search_workers.py",
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{len(os.sched_getaffinity(0))} cores",
        "wall_seconds": round(seconds, 1), "workers": len(workers),
        "torch_threads": sorted({line.split("torch threads: ")[1] for line in
                                 done.stderr.splitlines() if "torch threads: " in line}),
        "states": {s: sum(r["state"] == s for r in rows) for s in sorted({r["state"]
                                                                          for r in rows})},
        "distinct_params": len({json.dumps(r["params"], sort_keys=True) for r in rows}),
        "overlapping_trial_pairs": overlap,
        "load_average": [round(x, 2) for x in load],  # the machine's, at start and end
        "result": yaml.safe_load(done.stdout[done.stdout.index("best_value:"):]),
        "trials": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for r in rows:
        print(f"trial {r['number']}: worker {r['worker']} {r['state']:8} "
              f"{r['value'] if r['value'] is None else round(r['value'], 4)} "
              f"{r['start_s']}-{r['end_s']} s {r['params']}")
    print(f"{seconds:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
