"""Two small locks that make several workers safe: one on a local file, one in the study's database.

* ``file_lock``: an ``flock`` on a file, for work on this machine's disk (fine-tuning a teacher into the cache:
  two workers on one machine must not train the same teacher twice; the second waits, then finds it cached).
* ``storage_lock``: a lock every worker of a study can see, wherever it runs, held only for the instant it
  takes to decide whether the study needs another trial and to create it.  PostgreSQL: an advisory lock;
  MySQL: ``GET_LOCK``; SQLite (one machine by nature): a file lock beside the database file.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import TextClause


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def storage_lock(engine, name: str) -> Iterator[None]:
    """Hold lock ``name`` in the database behind SQLAlchemy ``engine`` (see the module docstring)."""
    from sqlalchemy import text

    backend = engine.url.get_backend_name()
    if backend == "sqlite":
        with file_lock(Path(f"{engine.url.database}.lock")):
            yield
        return
    with engine.connect() as conn:
        release: tuple[TextClause, dict[str, int | str]] | None
        if backend == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key(name)})
            release = (text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key(name)})
        elif backend in ("mysql", "mariadb"):
            conn.execute(text("SELECT GET_LOCK(:n, -1)"), {"n": name[:64]})
            release = (text("SELECT RELEASE_LOCK(:n)"), {"n": name[:64]})
        else:  # another database: no cross-process lock; the trial count may overshoot by a trial per worker
            release = None
        conn.commit()
        try:
            yield
        finally:
            if release is not None:
                conn.execute(*release)
                conn.commit()
