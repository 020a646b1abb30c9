"""benchmarks/cost_figure.py: each row's time is its samples over a speed measured alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fake_run(path: Path, f1: float, samples_per_second: float, samples: int = 1000) -> str:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({
        "run_format": 2, "test/macro_f1": f1, "params/trainable_share": 0.01,
        "train/samples_seen": samples, "time/train_samples_per_second": samples_per_second,
        "time/fit_seconds": samples / samples_per_second * 3, "time/feature_seconds": None}))
    return str(path)


def cost_figure(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/cost_figure.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_rows_are_timed_by_their_speed_alone_not_their_recorded_wall_time(tmp_path):
    own = ",".join(fake_run(tmp_path / f"own/s{i}", f1, speed)
                   for i, (f1, speed) in enumerate([(0.5, 10.0), (0.6, 30.0)]))
    shared = fake_run(tmp_path / "shared/s0", 0.55, 5.0)  # its cores were busy: slow
    alone = fake_run(tmp_path / "alone/s0", 0.0, 100.0, samples=50)
    done = cost_figure("--row", "timed alone", own, "own", "--row", "timed shared", shared,
                       alone, "--out", str(tmp_path / "cost"))
    assert done.returncode == 0, done.stderr
    rows = {r["label"]: r for r in json.loads((tmp_path / "cost.json").read_text())["rows"]}
    assert abs(rows["timed alone"]["seconds_alone"] - 1000 / 20.0) < 1e-9  # mean speed 20
    assert abs(rows["timed alone"]["test_macro_f1_mean"] - 0.55) < 1e-9
    assert abs(rows["timed shared"]["seconds_alone"] - 1000 / 100.0) < 1e-9
    assert rows["timed shared"]["seconds_as_recorded"] == 600.0
    assert (tmp_path / "cost.png").stat().st_size > 0


def test_a_row_whose_seeds_saw_different_samples_is_refused_by_name(tmp_path):
    runs = [fake_run(tmp_path / "a", 0.5, 10.0), fake_run(tmp_path / "b", 0.5, 10.0, 2000)]
    done = cost_figure("--row", "mixed", ",".join(runs), "own", "--out", str(tmp_path / "c"))
    assert done.returncode != 0 and "mixed" in done.stderr and "Traceback" not in done.stderr


def test_a_speed_run_without_a_speed_is_named_not_a_traceback(tmp_path):
    run = fake_run(tmp_path / "a", 0.5, 10.0)
    untimed = tmp_path / "untimed"
    fake_run(untimed, 0.0, 10.0)
    metrics = json.loads((untimed / "metrics.json").read_text())
    metrics["time/train_samples_per_second"] = None
    (untimed / "metrics.json").write_text(json.dumps(metrics))
    done = cost_figure("--row", "r", run, str(untimed), "--out", str(tmp_path / "c"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{untimed} records no time/train_samples_per_second" in done.stderr
