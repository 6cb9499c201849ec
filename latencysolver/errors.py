"""Errors a user can act on.  The CLI prints them as one line and exits non-zero; nothing else is caught there."""

from __future__ import annotations

from typing import Any

_UNSET: Any = object()


class LatencySolverError(Exception):
    """Base class: the message is one line that names the file, key and value at fault."""


class ConfigError(LatencySolverError):
    """A study or search-space YAML that is malformed, has an unknown key, a wrong type or an empty range.

    ``file``, ``key`` (a dotted path, e.g. ``distillation.steps``) and ``value`` are kept as fields, so no caller
    has to parse them back out of the message; each is None (``value``: unset) where it does not apply.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, value: Any = _UNSET):
        super().__init__(message)
        self.file = file
        self.key = key
        self.value = value

    @property
    def has_value(self) -> bool:
        return self.value is not _UNSET


class DataError(LatencySolverError):
    """A data folder or hub dataset that is missing, unreadable or lacks required columns or splits."""


class StorageError(LatencySolverError):
    """A storage URL that cannot be parsed or reached, or a study that is not in it."""


class ModelError(LatencySolverError):
    """A model id or path that cannot be loaded, or a cached checkpoint that is corrupted."""


class TrialFailure(Exception):
    """Raised inside a trial (e.g. a NaN loss): the trial is recorded as FAIL with this reason, the study goes on."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
