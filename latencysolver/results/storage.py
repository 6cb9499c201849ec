"""Orchestration: check inputs, build what every trial shares once, then run or resume the Optuna study.

Order matters for "nothing half-written": the config, the storage URL and the data are all checked before
anything is trained or any row is written to storage.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from latencysolver.config.study import StudyConfig
from latencysolver.config.urls import scrub, shown_url
from latencysolver.errors import OutputError, StorageError, first_line
from latencysolver.errors import shown as shown_value  # `shown` is a masked URL in several functions here
from latencysolver.files import atomic_file, check_writable
from latencysolver.results.records import study_record

# ------------------------------------------------------------------------------------------------ storage


def check_storage(url: str, *, must_exist: bool = False, writable: bool = False) -> None:
    """Parse and reach the storage without writing to it; a SQLite file is only created by the study itself.

    ``writable``: a SQLite file (or the folder it is to be made in) must be writable, for commands that write
    trials or notes; a read-only file or folder is refused here rather than by a failed commit after the work.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StorageError(
            f"--storage: cannot parse {shown_url(url)!r} as a database URL "
            "(e.g. sqlite:///latencysolver.db or postgresql+psycopg://user:pw@host/db)"
        ) from None
    shown = shown_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StorageError(f"--storage {shown!r}: an in-memory SQLite database keeps nothing; name a file")
        path = Path(parsed.database)
        if path.is_dir():
            raise StorageError(f"--storage {shown!r}: {str(path)!r} is a folder, not a database file")
        if must_exist and not path.is_file():
            raise StorageError(f"--storage {shown!r}: no such database file {str(path)!r}")
        if writable:  # a path under a file, a read-only folder: SQLite also writes a journal beside the file
            check_writable(path, f"--storage {shown!r}: database", folder=False)
            if path.is_file() and not os.access(path, os.W_OK):
                raise OutputError(f"--storage {shown!r}: database {str(path)!r} is read-only")
        if not path.parent.is_dir():
            raise StorageError(f"--storage {shown!r}: folder {str(path.parent)!r} does not exist")
        return
    try:
        engine = create_engine(parsed)
    except (NoSuchModuleError, ImportError) as exc:
        raise StorageError(f"--storage {shown!r}: unknown database driver: {scrub(first_line(exc), url)}") from None
    try:
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - each driver raises its own types; any of them means "cannot connect"
        raise StorageError(f"--storage {shown!r}: cannot connect: {scrub(first_line(exc), url)}") from None
    finally:
        engine.dispose()


def default_artifact_dir(config: StudyConfig) -> Path:
    """Beside a SQLite file (``x.db`` → ``x-artifacts/``); else ``./latencysolver-artifacts``."""
    if config.artifacts:
        return Path(config.artifacts).expanduser().resolve()
    from sqlalchemy.engine import make_url

    parsed = make_url(config.storage)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        db = Path(parsed.database)
        return (db.parent / f"{db.stem}-artifacts").resolve()
    return Path("latencysolver-artifacts").resolve()


def load_existing_study(name: str, storage: str) -> optuna.Study:
    return open_existing_study(name, storage).study


@dataclass(frozen=True)
class OpenedStudy:
    """A study with the storage it was opened on: artifact look-ups (``get_all_artifact_meta``) need that
    storage, and Optuna has no public way to get it back from the study."""

    study: optuna.Study
    storage: BaseStorage


def open_existing_study(name: str, storage: str) -> OpenedStudy:
    check_storage(storage, must_exist=True)
    shown = shown_url(storage)
    # Optuna writes its schema into any database it opens: look into a SQLite file read-only first, so that an
    # empty file or a file that is no database stays exactly as it was.
    names = _sqlite_study_names(storage)
    if names is not None and name not in names:
        raise StorageError(
            f"--study: no study named {shown_value(name)} in {shown!r} (studies there: {shown_value(names)})"
        )
    try:
        opened = optuna.storages.get_storage(storage)
        return OpenedStudy(optuna.load_study(study_name=name, storage=opened), opened)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StorageError(
            f"--study: no study named {shown_value(name)} in {shown!r} (studies there: {shown_value(names)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a database Optuna cannot read (another schema, say): any error
        raise StorageError(f"--storage {shown!r}: cannot read studies: {scrub(first_line(exc), storage)}") from None


def find_study(name: str, storage: str) -> optuna.Study | None:
    """The study if the storage holds it, else None; a SQLite file that does not hold it is left as it was."""
    from sqlalchemy.engine import make_url

    parsed = make_url(storage)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return None
    names = _sqlite_study_names(storage)
    if names is not None and name not in names:
        return None
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    except Exception as exc:  # noqa: BLE001 - a database Optuna cannot read (another schema, say): any error
        raise StorageError(f"--storage {shown_url(storage)!r}: cannot open study {name!r}: {first_line(exc)}") from None


def _sqlite_study_names(url: str, *, intact: bool = False) -> list[str] | None:
    """Study names in a SQLite storage, read without writing; None for other databases.

    ``intact``: the file must also be a whole Optuna database (not empty, with Optuna's tables, passing SQLite's
    ``quick_check``), for a command that would otherwise write Optuna's schema into it or fail deep inside a
    library (the dashboard)."""
    import sqlite3

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    where = f"--storage {shown_url(url)!r}: {parsed.database!r}"
    try:
        with sqlite3.connect(f"file:{parsed.database}?mode=ro", uri=True) as db:
            if intact:
                problems = [row[0] for row in db.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise StorageError(f"{where} is damaged (SQLite's quick_check: {shown_value(problems[0])})")
            if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='studies'").fetchone():
                if intact:
                    empty = Path(parsed.database or "").stat().st_size == 0
                    what = "an empty file" if empty else "a SQLite database without Optuna's tables"
                    raise StorageError(f"{where} is {what}: no studies to show (`latencysolver run` makes them)")
                return []  # an empty file, or a database without Optuna's tables
            return [row[0] for row in db.execute("SELECT study_name FROM studies ORDER BY study_id")]
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{where} is not an Optuna SQLite database ({exc})") from None


def check_intact(url: str) -> None:
    """A SQLite storage must be a whole Optuna database (see ``_sqlite_study_names``); read only, so the file
    stays as it was.  Other databases: nothing to check here."""
    _sqlite_study_names(url, intact=True)


def require_made_by_run(study: optuna.Study, storage: str, *, to_run_trials: bool = False) -> None:
    """Refuse a study that ``latencysolver run`` did not create (a plain Optuna study in the same storage): its
    trials carry no recipe, no measurements and no teacher, so no command here can read them.  Reading needs the
    teacher's record (or the config); running more trials needs the config."""
    record = study_record(study)
    if record.config is None and (to_run_trials or record.teacher is None):
        raise StorageError(
            f"study {study.study_name!r} in {shown_url(storage)!r} was not created by `latencysolver run` "
            "(it has no 'config' attribute); start it with `latencysolver run STUDY.yaml` first"
        )


class AtomicArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store whose writes go to a temporary file renamed into place: a full disk or
    a killed process never leaves a truncated artifact under its id (one a worker would copy as the teacher).
    A failed write is one ``OutputError`` naming the folder and the OS's reason."""

    def __init__(self, folder: str | Path):
        super().__init__(str(folder))
        self.folder = Path(folder)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        with atomic_file(self.folder / artifact_id, "artifacts folder", self.folder) as tmp, open(tmp, "wb") as sink:
            shutil.copyfileobj(content_body, sink)


def artifact_store_of(study: optuna.Study, override: str | None = None) -> AtomicArtifactStore:
    folder = override or study_record(study).artifact_dir
    if not folder or not Path(folder).is_dir():
        raise StorageError(f"study {study.study_name!r}: artifact folder {folder!r} not found (pass --artifacts)")
    return AtomicArtifactStore(folder)


def download_trial(store: AtomicArtifactStore, storage: BaseStorage, trial: FrozenTrial, folder: Path) -> Path:
    """Every file the trial stored (its student, model.onnx, predictions, latency samples) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for meta in get_all_artifact_meta(trial, storage=storage):
        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(folder / meta.filename))
    return folder
