"""``latencysolver remeasure``: time trials' stored models again, on this machine, and record the new figures.

A trial whose latency measurement stayed unstable (``latency/stability.py``: a pair-ratio CV or a teacher drift
past the study's bounds, typically a loaded machine) keeps its figures with the flag and sits off the front and
out of ``--best``.  ``remeasure`` downloads each such trial's model from the artifact store, measures it paired
with the study's teacher under the same protocol and checks (``measure_checked``), and records the result in the
study's ``remeasured`` attr, keyed by trial number: a finished trial's own attrs cannot change in Optuna, so the
readers apply it (``results.front.completed_trials``): the new speed-up or p50 becomes the trial's latency
objective everywhere this package reads it (front, ``--best``, report, export card), and a stable result clears
the flag.  The sampler's own history keeps the values the trial was told with.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage

from latencysolver.data.batches import truncate_inputs
from latencysolver.errors import SelectionError
from latencysolver.latency.protocol import latency_inputs
from latencysolver.latency.stability import StabilityCheck, measure_checked
from latencysolver.locks import storage_lock
from latencysolver.models.student import load_student
from latencysolver.results.front import get_trial, unstable_trials
from latencysolver.results.records import StudyRecord, study_record, trial_record, write_study_record
from latencysolver.results.storage import (
    artifact_store_of,
    check_storage,
    download_trial,
    open_existing_study,
    require_made_by_run,
)
from latencysolver.search.preparation import RunOptions, baseline_reference_ms, study_hardware
from latencysolver.search.workers import open_storage

Log = Callable[[str], None]


@dataclass(frozen=True)
class Remeasurement:
    trial: int
    before: float | None  # the speed-up the trial had (its own, or an earlier remeasurement's)
    after: float
    latency_p50_ms: float
    check: StabilityCheck


def remeasure(
    name: str,
    storage: str,
    *,
    trials: Sequence[int] | None = None,
    options: RunOptions = RunOptions(),
    log: Log = print,
) -> list[Remeasurement]:
    """Re-time ``trials`` of study ``name`` (default: every trial flagged unstable); returns what each read."""
    from latencysolver.search.run import prepare_stored

    check_storage(storage, must_exist=True, writable=True)
    opened = open_existing_study(name, storage)
    study = opened.study
    require_made_by_run(study, storage, to_run_trials=True)
    chosen = [get_trial(study, n, "--trials") for n in trials] if trials else unstable_trials(study)
    if not chosen:
        raise SelectionError(f"study {name!r} has no trial whose latency is flagged unstable; name some with --trials")
    config, prepared = prepare_stored(study, storage, options, log)
    inputs = latency_inputs(prepared.validation, config.latency, prepared.pad_id)
    teacher = prepared.teacher.model
    hardware = study_hardware(config)
    baseline = baseline_reference_ms(study_record(study).teacher, teacher, inputs, config.latency, hardware.key)
    log(f"remeasure: {len(chosen)} trial(s) of study {name!r} on {hardware.describe()} [{hardware.key}]")
    store = artifact_store_of(study)
    lock_storage = open_storage(storage, config.workers)
    done = []
    for trial in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            folder = download_trial(store, opened.storage, trial, Path(tmp))
            student = load_student(folder, threads=config.latency.threads)
            length = student.info.get("max_length")  # a max_tokens student reads fewer tokens than the teacher
            rows = inputs
            if isinstance(length, int) and length < config.data.max_length:
                rows = [truncate_inputs(x, length) for x in inputs]
            paired, check = measure_checked(
                student.model, teacher, rows, config.latency, baseline, reference_inputs=inputs
            )
        figures: dict[str, Any] = {
            "speedup": paired.speedup,
            "speedup_cv": paired.speedup_cv,
            "latency_p50_ms": paired.model.p50_ms,
            "latency_p90_ms": paired.model.p90_ms,
            "latency_cv": paired.model.cv,
            "reference_p50_ms": paired.reference.p50_ms,
            "hardware": hardware.to_dict(),
            "hardware_key": hardware.key,
            "latency_stability": check.to_dict(),
            "remeasured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        _record(study, lock_storage, trial.number, figures)
        before = trial_record(trial).speedup  # get_trial and unstable_trials give each trial's latest figures
        done.append(Remeasurement(trial.number, before, paired.speedup, paired.model.p50_ms, check))
        log(
            f"trial {trial.number:>3}  {before or float('nan'):.2f}x -> {paired.speedup:.2f}x ±{paired.speedup_cv:.0%}"
            f"  p50 {paired.model.p50_ms:.2f} ms  {check.describe()}"
        )
    return done


def _record(study: optuna.Study, storage: RDBStorage, number: int, figures: dict[str, Any]) -> None:
    """Add one trial's figures to the study's ``remeasured`` attr, under the storage lock (read, merge, write)."""
    with storage_lock(storage.engine, f"latencysolver:{study.study_name}"):
        fresh = optuna.load_study(study_name=study.study_name, storage=storage)
        merged = {**(study_record(fresh).remeasured or {}), str(number): figures}
        write_study_record(fresh, StudyRecord(remeasured=merged))
