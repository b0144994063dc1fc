"""Domain errors that the CLI and the UI show as one sentence.

Every message names what was wrong and how to fix it (scikit-learn's three-part style:
what was expected, what arrived, what to do). The CLI prints ``xai-lab: error: <message>``
and exits with status 2; no traceback is shown for these.
"""

from __future__ import annotations


class XaiLabError(Exception):
    """Base class for errors caused by the user's input rather than by a bug."""


class DataError(XaiLabError):
    """A dataset file, folder or name is missing, malformed or inconsistent."""


class ModelError(XaiLabError):
    """A model directory is missing, damaged or does not fit the data it is used with."""


class ConfigError(XaiLabError):
    """A setting (CLI option, environment variable, design file value) is invalid."""


class ExplainError(XaiLabError):
    """A saliency request cannot be served: unknown method, bad target, wrong image, wrong cache."""


class StudyError(XaiLabError):
    """A request the study cannot accept (unknown link, step not current, changed design); nothing was recorded."""
