"""Errors a user can act on.  The CLI prints them as one line and exits non-zero; nothing else is caught there."""


class LatencySolverError(Exception):
    """Base class: the message is one line that names the file, key and value at fault."""


class ConfigError(LatencySolverError):
    """A study or search-space YAML that is malformed, has an unknown key, a wrong type or an empty range."""


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
