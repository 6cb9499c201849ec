"""The study's teacher in its artifact store: ``run`` shares it once, a worker on another machine copies it.

Both sides go through temporary files and folders renamed into place, and both run their cache side under the
teacher's file lock, so a full disk or a killed process leaves neither a truncated artifact nor half a teacher.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.artifacts import download_artifact, upload_artifact

from latencysolver.cache import cache_root
from latencysolver.config.study import StudyConfig
from latencysolver.files import check_writable, remove_stale_staging, writing
from latencysolver.locks import file_lock
from latencysolver.models.teacher import MARKER as TEACHER_MARKER
from latencysolver.models.teacher import Teacher
from latencysolver.results.records import StudyRecord, TeacherArtifacts, study_record, write_study_record
from latencysolver.results.storage import AtomicArtifactStore, default_artifact_dir
from latencysolver.search.preparation import RunOptions

Log = Callable[[str], None]


def check_output_folders(config: StudyConfig, options: RunOptions) -> None:
    """The cache and the artifact folder can be written: checked before any work, creating nothing."""
    check_writable(cache_root(options.cache_dir), "--cache-dir" if options.cache_dir else "cache folder", folder=True)
    check_writable(default_artifact_dir(config), "artifacts folder", folder=True)


def share_teacher(study: optuna.Study, teacher: Teacher, store: AtomicArtifactStore) -> None:
    """Put the fine-tuned teacher in the study's artifact store once, for workers on other machines.

    Recorded only once every file is in: a failed copy (a full disk) removes the files it wrote, so no worker ever
    copies part of a teacher."""
    shared = study_record(study).teacher_artifacts
    if shared is not None and shared.key == teacher.key:
        return
    files: dict[str, str] = {}
    try:
        for p in sorted(teacher.path.iterdir()):
            if p.is_file():
                files[p.name] = upload_artifact(artifact_store=store, file_path=str(p), study_or_trial=study)
    except BaseException:
        for artifact_id in files.values():
            store.remove(artifact_id)
        raise
    write_study_record(study, StudyRecord(teacher_artifacts=TeacherArtifacts(teacher.key, files)))


def fetch_teacher(study: optuna.Study, root: Path, log: Log) -> Path | None:
    """A worker on a machine without the teacher: copy it from the artifact store into this cache, once."""
    record = study_record(study)
    shared, artifact_dir = record.teacher_artifacts, record.artifact_dir
    if not shared or not artifact_dir or not Path(artifact_dir).is_dir():
        return None  # nothing shared: prepare() fine-tunes it here (under the cache lock)
    target = root / "teachers" / shared.key
    with file_lock(root / "teachers" / f"{shared.key}.lock"):
        remove_stale_staging(target.parent, f".{target.name}-")  # a killed copy's leftovers (no one else is copying)
        if (target / TEACHER_MARKER).is_file():
            return target
        store = AtomicArtifactStore(artifact_dir)
        with writing(target.parent, "cache folder"):
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            with writing(target.parent, "cache folder"):
                for name, artifact_id in shared.files.items():
                    download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(staging / name))
                if target.exists():
                    shutil.rmtree(target)
                staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log(f"teacher: copied from the study's artifact store -> {target}")
    return target
