"""Exceptions raised for bad input.

Every error a user can cause (a wrong name, a missing file, a bad config value) derives from
:class:`LsmlHubError`. The CLI prints such errors as one line and exits with status 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class LsmlHubError(Exception):
    """Base class for errors caused by user input; the message says what was wrong and what is valid."""


class ConfigError(LsmlHubError, ValueError):
    """A configuration key or value is unknown or invalid."""


class DataError(LsmlHubError, ValueError):
    """A dataset, split, column or class subset cannot be used as a task."""


class InitError(LsmlHubError):
    """An init cannot be found, verified or loaded."""


class IntegrityError(InitError):
    """A file's content does not match the checksum recorded next to it."""


class TrainingError(LsmlHubError, RuntimeError):
    """Training cannot go on (for example a non-finite loss); the last good checkpoint is kept."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message: errors from other libraries are reported as one line."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
