"""The command-line convention every face follows: `python -m emotion_lab.<face> key=value`.

No --flags and no positional arguments: every setting is a key=value word. Faces that build
a run from config groups (train, evaluate, prepare, rationales, search) read the words as
Hydra overrides, so they take groups (`adapter=lora`), sweeps (`-m`) and `+key=value`. Faces
that apply a finished run (predict, serve, explain, export, report) take the words verbatim,
converted per key to its default's type: they carry free text, and the apostrophes and
commas of emotional text are syntax to Hydra's grammar.

One rule at every face: a user error (emotion_lab.errors.EmotionLabError, a bad override, a
config that does not compose) is one line on stderr, `error: <what is wrong and how to fix
it>`, and exit code 2; never a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from omegaconf.errors import OmegaConfBaseException

from emotion_lab import settings
from emotion_lab.errors import CliError, ConfigError, EmotionLabError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# Hydra's own flags that take no value besides -m; with any other flag Hydra answers itself
MULTIRUN_FLAGS = ("-m", "--multirun")
MAX_CHECKED_JOBS = 64  # composing takes ~0.1 s a job


def user_error(message: Any) -> int:
    """The user-error rule: the message as one line on stderr; returns the exit code, 2."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"error: {text}", file=sys.stderr, flush=True)
    return 2


def fail(message: Any) -> NoReturn:
    sys.exit(user_error(message))


def flag(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise CliError(f"{value!r}: expected true or false")


def parse_key_values(argv: list[str], defaults: dict[str, Any],
                     required: tuple[str, ...] = ("run_dir",),
                     rules: dict[str, settings.Rule] | None = None) -> dict[str, Any]:
    """`key=value` words over `defaults`; a value is converted to its default's type (kept
    verbatim where the default is None), then checked against its rule in `rules` (the
    schema of emotion_lab.settings), so a value out of range is refused here by name."""
    args = dict(defaults)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            raise CliError(f"{arg!r}: expected key=value with key one of {', '.join(defaults)}")
        kind = type(defaults[key])
        try:
            args[key] = (flag(value) if kind is bool else kind(value)
                         if defaults[key] is not None else value)
        except ValueError as e:
            expected = {int: "an integer", float: "a number", bool: "true or false"}
            raise CliError(f"{key}={value}: expected {expected.get(kind, kind.__name__)}") \
                from e
    for key, rule in (rules or {}).items():  # after every word parsed: syntax first
        if args[key] != defaults[key] and not rule.accepts(args[key]):
            raise CliError(f"{key}={args[key]}: expected {rule.allowed()}")
    missing = [k for k in required if not args.get(k)]
    if missing:
        hint = (" (run_dir: a directory written by python -m emotion_lab.train)"
                if "run_dir" in missing else "")
        raise CliError(f"{', '.join(f'{k}=...' for k in missing)} required{hint}")
    return args


def run_face(work: Callable[[list[str]], Any], argv: list[str] | None = None) -> int:
    """A verbatim key=value face: run `work(argv)`; a user error becomes one line, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        work(sys.argv[1:] if argv is None else argv)
    except EmotionLabError as e:
        return user_error(e)
    return 0


def hydra_face(task: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The task of a Hydra face (under @hydra.main): a user error it raises (ours, or a
    config value that does not resolve) becomes one line, exit 2."""

    @functools.wraps(task)
    def guarded(cfg: Any) -> Any:
        try:
            settings.check(cfg)
            return task(cfg)
        except (EmotionLabError, OmegaConfBaseException) as e:
            fail(e)

    return guarded


def check_overrides(config_name: str, argv: list[str] | None = None) -> None:
    """Compose the face's config with the command line's overrides and check its values
    (emotion_lab.settings) before Hydra runs it, so that a bad override (a typo, a group
    option that does not exist, a value out of range) is one line and exit 2, not Hydra's
    multi-line report or a traceback, and no run directory is created. Under -m every job's
    overrides are composed (the first MAX_CHECKED_JOBS), so no sweep fails at its fifth
    job. Hydra's other flags (--help, --cfg, --config-dir, ...) are left to Hydra."""
    argv = sys.argv[1:] if argv is None else argv
    flags = [a for a in argv if a.startswith("-")]
    if any(f not in MULTIRUN_FLAGS for f in flags):
        return
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    jobs = [[a for a in argv if not a.startswith("-")]]
    try:
        if flags:
            parsed = OverridesParser.create().parse_overrides(jobs[0])
            jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            for job in jobs[:MAX_CHECKED_JOBS]:
                settings.check(compose(config_name, overrides=list(job),
                                       return_hydra_config=True))
    except (HydraException, OmegaConfBaseException) as e:
        fail(f"{e} (python -m emotion_lab.<face> --help lists the config groups; "
             f"--cfg job prints the composed config)")
    except ConfigError as e:
        fail(e)
    finally:
        GlobalHydra.instance().clear()
