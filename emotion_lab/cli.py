"""key=value command lines for the tools that apply a run (explain, predict, serve, export).

Hydra's override grammar would read commas, colons and quotes inside a text as syntax; these
tools take free text, so values are kept verbatim and converted per key.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from emotion_lab.models.backbones import BackboneError
from emotion_lab.rundir import RunDirError


class CliError(ValueError):
    """A bad command line; the message says what is wrong and what is valid."""


def flag(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise CliError(f"{value!r}: expected true or false")


def parse_key_values(argv: list[str], defaults: dict[str, Any],
                     required: tuple[str, ...] = ("run_dir",)) -> dict[str, Any]:
    """`key=value` arguments over `defaults`; a value is converted to its default's type."""
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
            raise CliError(f"{key}={value}: expected a {kind.__name__}") from e
    missing = [k for k in required if not args.get(k)]
    if missing:
        raise CliError(f"{', '.join(f'{k}=...' for k in missing)} required (run_dir: a "
                       f"directory written by python -m emotion_lab.train)")
    return args


def run_main(work: Callable[[list[str]], Any], errors: tuple[type[Exception], ...] = ()) -> int:
    """Run `work(argv)`; bad arguments, incomplete run directories, unloadable models and
    `errors` become one line on stderr and exit code 2, not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        work(sys.argv[1:])
    except (CliError, RunDirError, BackboneError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
