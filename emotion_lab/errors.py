"""The errors a user can cause, under one base class.

Every face (python -m emotion_lab.<face>) catches `EmotionLabError` and prints its message
as one line on stderr with exit code 2 (emotion_lab.cli.run_face); anything else is a bug
and keeps its traceback. A message says what is wrong and how to fix it. Each concern has
its subclass, so code and tests can tell them apart; the built-in base beside ours keeps
`except ValueError` and friends in callers' code working.
"""

from __future__ import annotations


class EmotionLabError(Exception):
    """A setting, input or file a user can fix; the message says how."""


class ConfigError(EmotionLabError, ValueError):
    """A combination of settings that cannot run; the message says what to do instead."""


class CliError(EmotionLabError, ValueError):
    """A bad command line; the message says what is wrong and what is valid."""


class DataError(EmotionLabError, ValueError):
    """Data that cannot be read or used as asked; the message says what to fix."""


class BackboneError(EmotionLabError, RuntimeError):
    """A backbone that cannot be loaded or used so; the message says how to make it work."""


class RunDirError(EmotionLabError, FileNotFoundError):
    """A run directory that lacks something or was written in another format."""


class PredictError(EmotionLabError, ValueError):
    """Input the predictor cannot score; the message says which item and why."""


class OcclusionError(PredictError):
    """A request that cannot be explained; the message says what is wrong and what is valid."""


class ExportError(EmotionLabError, ValueError):
    """A run that cannot be exported in the asked format; the message says what can."""


class EvaluationError(EmotionLabError, ValueError):
    """Runs or metrics that cannot be compared or gated as asked."""


class ComparisonError(EvaluationError):
    """Runs that cannot be compared (no shared test set, no finished run)."""


class ReportError(EvaluationError):
    """A report that cannot be written from the runs given."""


class GateError(EvaluationError):
    """A gate that names a metric the evaluation does not have."""


class SearchError(EmotionLabError, ValueError):
    """A hyperparameter search that cannot run as configured."""


class TeacherError(EmotionLabError, RuntimeError):
    """A teacher model that cannot be reached or used."""
