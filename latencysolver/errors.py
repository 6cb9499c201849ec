"""Every error class of latencysolver, under one root.

Errors a user can act on derive from ``LatencySolverError``: the CLI prints them as one line and exits 1;
nothing else is caught there.  The tree::

    LatencySolverError
    ├── ConfigError             a study / search-space YAML, or a command-line value, that is wrong
    │   └── FieldError          one field of a config dataclass out of range (also a ValueError)
    ├── DataError               a data folder or hub dataset that cannot be used
    ├── StorageError            a storage URL that cannot be reached, or a study that is not in it
    ├── OutputError             a file or folder that cannot be written (the path and the OS's reason)
    ├── ModelError              a model that cannot be loaded
    │   └── CompressionRefused  a compression pass that cannot act on this architecture (also a ValueError)
    ├── ResultsError            a finished study's results cannot give what was asked
    │   ├── SelectionError      no trial satisfies the selection rule (--best, --max-latency-ms)
    │   └── ReportError         a study the report cannot describe, or an --out folder that does not exist
    └── TrialFailure            inside a trial only: the trial is recorded as FAIL, the study goes on
"""

from __future__ import annotations

import reprlib
from typing import Any

_UNSET: Any = object()

SHOWN_CHARS = 80  # the most of a value a message shows
MESSAGE_CHARS = 1000  # and the most of any ConfigError message (a backstop for values not passed through shown)

# Bounded like the cut below, so a huge value is never repr'd in full first; for one whose repr fits in
# SHOWN_CHARS it gives exactly repr(value).
_REPR = reprlib.Repr()
_REPR.maxlevel = _REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 40
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = SHOWN_CHARS


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for a message: at most ``limit`` characters, cut with '...'."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


PATH_CHARS = 4096  # Linux's PATH_MAX: a path the user typed is shown whole up to it


def shown_path(path: Any) -> str:
    """``repr(str(path))`` for a message, whole (a path cut in the middle cannot be found again), unless it is
    longer than any path the OS accepts."""
    text = str(path)
    return repr(text) if len(text) <= PATH_CHARS else shown(text, PATH_CHARS)


def clip(message: str, limit: int = MESSAGE_CHARS) -> str:
    """A message of one line, at most ``limit`` characters."""
    message = " ".join(message.splitlines()) if "\n" in message else message
    return message if len(message) <= limit else message[: limit - 3] + "..."


class LatencySolverError(Exception):
    """Base class: the message is one line that names the file, key and value at fault."""


class ConfigError(LatencySolverError):
    """A study or search-space YAML that is malformed, has an unknown key, a wrong type or an empty range.

    ``file``, ``key`` (a dotted path, e.g. ``distillation.steps``) and ``value`` are kept as fields, so no caller
    has to parse them back out of the message; each is None (``value``: unset) where it does not apply.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, value: Any = _UNSET):
        super().__init__(clip(message))
        self.file = file
        self.key = key
        self.value = value

    @property
    def has_value(self) -> bool:
        return self.value is not _UNSET


class FieldError(ConfigError, ValueError):
    """A config dataclass's ``__post_init__`` check: one field out of range.

    ``key`` is the field's name (``warmup``), ``value`` its value, and the message reads
    "<field> must be ..., but got <value>".  Loading a YAML file turns it into a ``ConfigError`` whose key is
    the dotted path and whose file is set; code that builds the dataclass directly sees this (a ``ValueError``
    too, as these checks raised before).
    """

    def __init__(self, key: str, message: str, value: Any = _UNSET):
        super().__init__(message, key=key, value=value)


class DataError(LatencySolverError):
    """A data folder or hub dataset that is missing, unreadable or lacks required columns or splits."""


class StorageError(LatencySolverError):
    """A storage URL that cannot be parsed or reached, or a study that is not in it."""


class OutputError(LatencySolverError):
    """A path latencysolver must write (an export, a report, predictions, the cache, the artifact folder, the
    SQLite file's folder) that is under a file, read-only, or on a full disk: the message names the path and the
    operating system's reason."""


class ModelError(LatencySolverError):
    """A model id or path that cannot be loaded, or a cached checkpoint that is corrupted."""


class CompressionRefused(ModelError, ValueError):
    """A compression pass cannot act on this model; the message names the pass and the architecture.

    Also a ``ValueError``: that is what these passes raised for an unknown model before the adapters existed.
    """


class ResultsError(LatencySolverError):
    """A study's recorded results cannot give what was asked of them (the study itself was read fine)."""


class SelectionError(ResultsError):
    """No completed trial satisfies the selection rule (``--best RULE``, ``--max-latency-ms``)."""


class ReportError(ResultsError):
    """A study the report cannot describe, or an ``--out`` folder that does not exist (``OutputError``: one that
    cannot be written)."""


class TrialFailure(LatencySolverError):
    """Raised inside a trial (e.g. a NaN loss): the trial is recorded as FAIL with this reason, the study goes on."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
