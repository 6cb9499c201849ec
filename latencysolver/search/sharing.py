"""The study's teacher (and its elastic student, and the teacher's labels of the augmented rows) in its artifact
store: ``run`` shares each once, a worker on another machine copies it.

Both sides go through temporary files and folders renamed into place, and both run their cache side under the
entry's file lock, so a full disk or a killed process leaves neither a truncated artifact nor half a folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import download_artifact, upload_artifact

from latencysolver.cache import cache_root
from latencysolver.config.study import StudyConfig
from latencysolver.files import check_writable, publish_folder, remove_stale_staging
from latencysolver.locks import file_lock
from latencysolver.models.augmented import MARKER as AUGMENTED_MARKER
from latencysolver.models.elastic import MARKER as ELASTIC_MARKER
from latencysolver.models.elastic import ElasticStudent
from latencysolver.models.teacher import MARKER as TEACHER_MARKER
from latencysolver.models.teacher import Teacher
from latencysolver.results.records import SharedFolder, StudyRecord, study_record, write_study_record
from latencysolver.results.storage import AtomicArtifactStore, default_artifact_dir
from latencysolver.search.context import AugmentedRows, RunOptions

Log = Callable[[str], None]


def check_output_folders(config: StudyConfig, options: RunOptions) -> None:
    """The cache and the artifact folder can be written: checked before any work, creating nothing."""
    check_writable(cache_root(options.cache_dir), "--cache-dir" if options.cache_dir else "cache folder", folder=True)
    check_writable(default_artifact_dir(config), "artifacts folder", folder=True)


def share_teacher(study: optuna.Study, teacher: Teacher, store: AtomicArtifactStore) -> None:
    """Put the fine-tuned teacher in the study's artifact store once, for workers on other machines."""
    _share(study, "teacher_artifacts", teacher.key, teacher.path, store)


def share_elastic(study: optuna.Study, elastic: ElasticStudent, store: AtomicArtifactStore) -> None:
    """The same for the elastic student of ``trial_mode: elastic``."""
    _share(study, "elastic_artifacts", elastic.key, elastic.path, store)


def share_augmented(study: optuna.Study, augmented: AugmentedRows, store: AtomicArtifactStore) -> None:
    """The same for the teacher's labels of the augmented rows (``data.augment``)."""
    assert augmented.path is not None  # the caller checked it
    _share(study, "augment_artifacts", augmented.key, augmented.path, store)


def fetch_teacher(study: optuna.Study, root: Path, log: Log) -> Path | None:
    """A worker on a machine without the teacher: copy it from the artifact store into this cache, once."""
    return _fetch(study, "teacher_artifacts", root / "teachers", TEACHER_MARKER, "teacher", log)


def fetch_elastic(study: optuna.Study, root: Path, log: Log) -> Path | None:
    """A worker on a machine without the elastic student: copy it into this cache (``prepare_elastic`` finds it)."""
    return _fetch(study, "elastic_artifacts", root / "elastic", ELASTIC_MARKER, "elastic student", log)


def fetch_augmented(study: optuna.Study, root: Path, log: Log) -> Path | None:
    """A worker on a machine without them: copy the augmented rows' labels into this cache (``label_rows`` uses
    them when they label the rows built here)."""
    return _fetch(study, "augment_artifacts", root / "augmented", AUGMENTED_MARKER, "augmented rows' labels", log)


def _share(study: optuna.Study, attr: str, key: str, folder: Path, store: AtomicArtifactStore) -> None:
    """Recorded only once every file is in: a failed copy (a full disk) removes the files it wrote, so no worker
    ever copies part of a folder."""
    shared = getattr(study_record(study), attr)
    if shared is not None and shared.key == key:
        return
    files: dict[str, str] = {}
    try:
        for p in sorted(folder.iterdir()):
            if p.is_file():
                files[p.name] = upload_artifact(artifact_store=store, file_path=str(p), study_or_trial=study)
    except BaseException:
        for artifact_id in files.values():
            store.remove(artifact_id)
        raise
    shared_record: dict[str, Any] = {attr: SharedFolder(key, files)}
    write_study_record(study, StudyRecord(**shared_record))


def _fetch(study: optuna.Study, attr: str, cache: Path, marker: str, what: str, log: Log) -> Path | None:
    record = study_record(study)
    shared, artifact_dir = getattr(record, attr), record.artifact_dir
    if not shared or not artifact_dir or not Path(artifact_dir).is_dir():
        return None  # nothing shared: it is built here (under the cache lock)
    target = cache / shared.key
    with file_lock(cache / f"{shared.key}.lock"):
        remove_stale_staging(cache, f".{target.name}-")  # a killed copy's leftovers (no one else is copying)
        if (target / marker).is_file():
            return target
        store = AtomicArtifactStore(artifact_dir)

        def download(staging: Path) -> None:
            for name, artifact_id in shared.files.items():
                download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(staging / name))

        publish_folder(target, download)
    log(f"{what}: copied from the study's artifact store -> {target}")
    return target
