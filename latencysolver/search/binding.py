"""A study is bound to its data, its teacher and its search space: resuming it with another one is refused.

Trials scored on another validation set, against another teacher or in another space cannot share one Pareto
front.  ``run`` records the binding when it creates the study, and checks each part as soon as it is known: the
search space before anything is loaded, the data right after loading (before the teacher is fine-tuned), the
teacher before its baseline is written.  A study made before the binding existed is not refused.  The commands
that add results to a stored study (``worker``, ``confirm``, ``remeasure``) use the study's teacher, and refuse a
``--teacher`` that is another one before they write anything.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from latencysolver.config.study import StudyConfig
from latencysolver.errors import StorageError
from latencysolver.models.loading import model_fingerprint
from latencysolver.models.teacher import given_teacher_key
from latencysolver.results.records import BindingRecord, StudyRecord, study_record
from latencysolver.results.storage import shown_url
from latencysolver.search.objective import objectives


def check_binding(config: StudyConfig, record: StudyRecord | None, now: BindingRecord, source: str = "") -> None:
    """Raise ``StorageError`` naming what differs between the study's binding and ``now`` (its set fields)."""
    bound = record.binding if record is not None else None
    if bound is None:
        return
    differ = bound.differences(now)
    if not differ:
        return
    details = []
    if "data" in differ:
        was = record.data.source if record is not None and record.data is not None else None
        details.append(
            f"data: scored on {was!r} (splits hash {str(bound.data_fingerprint)[:12]}), "
            f"now {source or config.data.source!r} (hash {str(now.data_fingerprint)[:12]})"
        )
    if "teacher" in differ:
        details.append(f"teacher: {bound.teacher_key}, now {now.teacher_key}")
    if "search space" in differ:
        old, new = bound.search_space or {}, now.search_space or {}
        knobs = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        details.append(f"search space: {', '.join(knobs)} changed")
    raise StorageError(
        f"study {config.name!r} in {shown_url(config.storage)!r} was run with another "
        f"{' and '.join(differ)} ({'; '.join(details)}); resuming it would mix trials scored differently in "
        f"one front: give this run a new study name (name: in {config.config_file or 'the study YAML'})"
    )


def check_given_teacher(study: optuna.Study, storage: str, teacher_path: str | None) -> None:
    """Refuse a ``--teacher`` other than the one the study is bound to, for the commands that add results to a
    stored study (``worker``, ``confirm``, ``remeasure``): their repeats, trials or speed-ups would be measured
    against another teacher than the study's.  The study's own folder, or a copy of it, is its teacher."""
    if teacher_path is None:
        return
    key = given_teacher_key(teacher_path)  # a missing folder: refused here, before anything is written
    record = study_record(study)
    bound = record.binding.teacher_key if record.binding is not None else None
    if bound is None or key == bound:
        return
    recorded = record.teacher.path if record.teacher is not None else None
    if recorded and Path(recorded).is_dir() and model_fingerprint(recorded) == model_fingerprint(teacher_path):
        return
    raise StorageError(
        f"study {study.study_name!r} in {shown_url(storage)!r} is bound to teacher {bound}, but --teacher "
        f"{teacher_path!r} is another ({key}): what it measured would be mixed with the study's results; leave "
        "--teacher out to use the study's own teacher"
    )


def check_objectives(study: optuna.Study, config: StudyConfig) -> list[str]:
    """Refuse a stored study that optimizes other objectives than the config asks for; the metric names."""
    names, directions = objectives(config.latency.objective)
    found = [d.name.lower() for d in study.directions]
    if found != directions or (study.metric_names and study.metric_names != names):
        raise StorageError(
            f"study {config.name!r} in {shown_url(config.storage)!r} optimizes {study.metric_names or found}, "
            f"but {config.config_file} asks for {names} (latency.objective: "
            f"{config.latency.objective}); pick another study name"
        )
    return names
