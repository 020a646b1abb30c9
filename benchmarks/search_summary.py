"""What an Optuna study of `python -m emotion_lab.search` found and what it cost: trials by
state, seconds per trial (completed and pruned), the best trials by the optimized metric,
and the best value for each choice of each categorical parameter.

    python benchmarks/search_summary.py --study minilm_frozen_head \
        --storage sqlite:///outputs/search/minilm_frozen_head.db \
        --out benchmarks/results/issue30_frozen_head_search.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

import optuna


def seconds(trial: optuna.trial.FrozenTrial) -> float:
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def summary(study: optuna.Study, top: int = 5) -> dict:
    finished = [t for t in study.trials if t.datetime_complete is not None]
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in finished if t.state == optuna.trial.TrialState.PRUNED]
    best = sorted(complete, key=lambda t: t.value,
                  reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    by_choice: dict[str, dict[str, float]] = {}
    for trial in best:  # best first: the first value seen for a choice is its best
        for name, value in trial.params.items():
            if isinstance(trial.distributions[name], optuna.distributions.CategoricalDistribution):
                by_choice.setdefault(name, {}).setdefault(str(value), trial.value)

    def stats(trials: list) -> dict:
        values = [seconds(t) for t in trials]
        return {"trials": len(values), "total_s": round(sum(values), 1),
                "median_s": round(statistics.median(values), 1) if values else None,
                "max_s": round(max(values), 1) if values else None}

    return {"study": study.study_name, "direction": study.direction.name.lower(),
            "states": dict(Counter(t.state.name for t in study.trials)),
            "seconds": {"all": stats(finished), "complete": stats(complete),
                        "pruned": stats(pruned),
                        "first_trial_s": round(seconds(finished[0]), 1) if finished else None},
            "best": [{"number": t.number, "value": t.value, "params": t.params,
                      "seconds": round(seconds(t), 1)} for t in best[:top]],
            "best_by_choice": by_choice}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=args.study, storage=args.storage)
    except KeyError:
        print(f"error: no study {args.study!r} in {args.storage}", file=sys.stderr)
        return 2
    found = summary(study)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=1) + "\n")
    print(json.dumps({k: found[k] for k in ("states", "seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
