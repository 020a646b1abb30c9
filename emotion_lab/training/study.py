"""The Optuna study under `python -m emotion_lab.search`: its storage, opened safely by many
processes at once; a heartbeat that fails the trials of killed workers; the sampler; the
worker processes that pull trials from one study on one machine. Nothing here trains: a
worker runs the trial loop it is given (emotion_lab.search's). Light to import (Optuna and
SQLAlchemy are loaded where used).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import random
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from emotion_lab.errors import SearchError

log = logging.getLogger(__name__)
# pg_advisory_xact_lock key of the schema creation ("emol"): one lock per database
SCHEMA_LOCK = 0x656D6F6C
OPEN_TRIES = 6  # SQLite and others: schema creation retried this often


def trial_seeded_tpe(seed: int | None) -> Any:
    """A TPE sampler whose randomness comes from (search seed, trial number).

    Seeded once per process, every start of the search would draw the same sequence: a
    resumed study replays its first trials' parameters, and two workers on one study
    propose the same trials (the startup trials are random samples, so all of them
    repeat). Trial numbers are handed out by the storage, once each across processes and
    restarts, so reseeding from them before each trial never repeats a draw and keeps the
    search reproducible. Optuna 5 keeps TPE's own RNG in `_rng` and its startup sampler's
    in `_random_sampler._rng` (no public way to seed a trial); a rename fails loudly here.
    """
    import numpy as np
    import optuna

    class TrialSeededTPE(optuna.samplers.TPESampler):
        def before_trial(self, study: Any, trial: Any) -> None:
            if seed is not None:
                state = int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0])
                self._rng.rng.seed(state)
                self._random_sampler._rng.rng.seed(state)
            super().before_trial(study, trial)

    return TrialSeededTPE(seed=seed)


def shown(url: str) -> str:
    """The storage URL for logs and messages: its password hidden."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


@contextlib.contextmanager
def quiet_heartbeat() -> Iterator[None]:
    """Optuna flags its heartbeat as experimental and warns when a trial is asked for
    outside Study.optimize; this search asks and tells itself (its own error handling) and
    runs Optuna's heartbeat thread around each trial (`heartbeat`), so both are expected."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        yield


def open_study(spec: dict[str, Any], sampler: Any, pruner: Any) -> Any:
    """Create the study (and, on a fresh database, its tables) or load it.

    Safe when many processes start at once on one fresh database. SQLAlchemy creates each
    table after checking it is absent; two processes both find it absent, and the second's
    CREATE fails once the first commits (PostgreSQL: a duplicate key in pg_type; SQLite:
    "table already exists"). On PostgreSQL, where the workers of many machines meet, a
    transaction-level advisory lock serializes the check-and-create: the later process
    waits about a second, then finds the tables; no error is raised, so none has to be
    recognised. SQLite (one machine) has no such lock, so there creation is retried after
    a short random backoff, when the tables the other process created are there.
    """
    import optuna
    import sqlalchemy

    url = spec["storage"]
    try:
        backend = sqlalchemy.engine.make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        raise SearchError(f"search.storage={url!r}: not a database URL; use "
                          f"sqlite:///<file>.db or postgresql://<user>:<password>@<host>/<db>"
                          ) from None

    def create() -> Any:
        with quiet_heartbeat():
            storage = optuna.storages.RDBStorage(
                url, heartbeat_interval=spec["heartbeat_interval"],
                grace_period=spec["grace_period"],
                # SQLite: several local workers write to one file; wait for its lock
                engine_kwargs={"connect_args": {"timeout": 60}} if backend == "sqlite" else {})
        return optuna.create_study(study_name=spec["study_name"], storage=storage,
                                   direction=spec["direction"], load_if_exists=True,
                                   sampler=sampler, pruner=pruner)

    errors = (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError)
    for attempt in range(1, OPEN_TRIES + 1):
        try:
            if backend != "postgresql":
                return create()
            with schema_lock(url):
                return create()
        except errors as e:
            if backend == "postgresql" or attempt == OPEN_TRIES:
                first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
                raise SearchError(f"search.storage={shown(url)}: cannot open the study "
                                  f"({first}); check the URL and that the database "
                                  f"answers") from e
            time.sleep(random.uniform(0.1, 0.3) * attempt)
    raise AssertionError("not reached")


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """PostgreSQL: hold the database's schema lock; released when its transaction ends."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": SCHEMA_LOCK})
            yield
    finally:
        engine.dispose()


def fail_stale_trials(study: Any) -> None:
    """RUNNING trials whose heartbeat is older than the grace period become FAIL (their
    worker was killed); every worker calls this before it asks for a trial."""
    import optuna

    with quiet_heartbeat():
        optuna.storages.fail_stale_trials(study)


def ask(study: Any) -> Any:
    with quiet_heartbeat():
        return study.ask()


def heartbeat(study: Any, trial: Any) -> Any:
    """Optuna's heartbeat thread for one trial, as Study.optimize runs it: it records the
    time in the storage every heartbeat_interval seconds until the trial ends. A private
    module (ask-and-tell has no public way to start it); a rename fails loudly here."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, study._storage)


def trial_loop(study: Any, run: Callable[[Any], float], spec: dict[str, Any], index: int,
               budget: Budget, stops: tuple[type[BaseException], ...]) -> None:
    """Claim a trial of the command's budget, ask the study for it, run it under a
    heartbeat and tell the study how it ended; until the budget is spent or the study
    holds search.max_trials (workers asking at the same moment may each add one more, as
    with Optuna's MaxTrialsCallback). A trial that
    raises is stored FAIL with its reason (user attr `fail_reason`), never left RUNNING;
    the loop goes on (search.on_error=continue) unless the error is one of `stops` (it
    would fail every trial alike), an interrupt, or on_error=stop."""
    import optuna

    cap = spec.get("max_trials")
    while budget.claim():
        if cap is not None and len(study.get_trials(deepcopy=False)) >= cap:
            log.info("the study holds %d trials (search.max_trials): no more", cap)
            budget.stop()
            break
        fail_stale_trials(study)  # trials of killed workers (any machine's) become FAIL
        trial = ask(study)
        trial.set_user_attr("worker", worker_name())
        budget.running[index] = trial.number
        with heartbeat(study, trial):
            try:
                value = run(trial)
            except optuna.TrialPruned as e:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
                log.info("trial %d pruned: %s", trial.number, e)
            except (Exception, KeyboardInterrupt) as e:
                reason = f"{type(e).__name__}: {e}".removesuffix(": ")
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    trial.set_user_attr("fail_reason", reason)  # unless failed as stale
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                if isinstance(e, (KeyboardInterrupt, *stops)) or spec["on_error"] == "stop":
                    raise
                log.warning("trial %d failed, going on (search.on_error=continue): %s",
                            trial.number, " ".join(reason.split()))
            else:
                study.tell(trial, value, skip_if_finished=True)
                log.info("trial %d: %s %.4f", trial.number, spec["metric"], value)
        budget.running[index] = -1


class Budget:
    """The n trials one command adds, shared by its workers: each claims one before it
    asks, so n_trials is the command's total whatever the number of workers. `running`
    holds each worker's trial number (-1 between trials), for a worker that dies."""

    def __init__(self, n: int, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.n, self.claimed = n, context.Value("i", 0)
        self.running = context.Array("i", [-1] * workers)

    def claim(self) -> bool:
        with self.claimed.get_lock():
            if self.claimed.value >= self.n:
                return False
            self.claimed.value += 1
            return True

    def stop(self) -> None:
        """No more trials: the other workers stop after the one they are running."""
        with self.claimed.get_lock():
            self.claimed.value = self.n


def worker_name() -> str:
    """Which process ran a trial (its user attr `worker`): host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_threads(workers: int) -> int:
    """Torch threads of each of `workers` processes: the cores divided among them."""
    from emotion_lab.training.setup import available_cores

    return max(1, available_cores() // workers)


def run_workers(target: Callable[..., None], args: tuple, budget: Budget, study: Any,
                spec: dict[str, Any]) -> list[int]:
    """target(*args, index, budget) in len(budget.running) processes at once; returns the
    indices of workers that died (killed: their trial is failed here, once its heartbeat is
    stale). A worker's error (an interrupt, a setting, on_error=stop) stops the others
    after their trial and is raised here once all have ended."""
    context = multiprocessing.get_context("spawn")  # no fork under torch's threads
    errors = context.SimpleQueue()
    processes = [context.Process(target=child, args=(target, args, k, budget, errors),
                                 name=f"search-worker-{k}")
                 for k in range(len(budget.running))]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:  # the workers got it too: each stores its trial FAIL
        for process in processes:
            process.join(timeout=60)
        raise
    raised = {}
    while not errors.empty():
        index, error = errors.get()
        raised[index] = error
    dead = [k for k, p in enumerate(processes) if p.exitcode != 0 and k not in raised]
    for k in dead:
        number = budget.running[k]
        log.warning("worker %d died (exit code %s)%s", k, processes[k].exitcode,
                    f" in trial {number}" if number >= 0 else "")
        if number >= 0:
            reap(study, number, spec)
    if raised:
        raise raised[min(raised)]
    return dead


def child(target: Callable[..., None], args: tuple, index: int, budget: Budget,
          errors: Any) -> None:
    """One worker process: logs prefixed with its index; an error goes back to the parent."""
    logging.basicConfig(level=logging.INFO, datefmt="%H:%M:%S",
                        format=f"%(asctime)s worker {index}: %(message)s")
    try:
        target(*args, index, budget)
    except BaseException as e:  # noqa: BLE001 (the parent re-raises it)
        budget.stop()
        errors.put((index, portable(e)))
        sys.exit(1)


def portable(error: BaseException) -> BaseException:
    """The error itself where it survives pickling; else its message in a SearchError (a
    user error stays one line) or a RuntimeError."""
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001
        from emotion_lab.errors import EmotionLabError

        kind = SearchError if isinstance(error, EmotionLabError) else RuntimeError
        return kind(f"{type(error).__name__}: {error}")


def reap(study: Any, number: int, spec: dict[str, Any]) -> None:
    """Wait until a dead worker's trial is FAIL: its heartbeat goes stale after
    grace_period seconds (without a heartbeat it stays RUNNING; say so)."""
    import optuna

    interval = spec["heartbeat_interval"]
    if interval is None:
        log.warning("trial %d stays RUNNING: search.heartbeat_interval=null", number)
        return
    deadline = time.monotonic() + (spec["grace_period"] or 2 * interval) + 3 * interval
    while time.monotonic() < deadline:
        fail_stale_trials(study)
        (trial,) = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if trial.state != optuna.trial.TrialState.RUNNING:
            log.warning("trial %d: %s (no heartbeat from its dead worker)", number,
                        trial.state.name)
            return
        time.sleep(interval)
