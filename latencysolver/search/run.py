"""Orchestration: check inputs, build what every trial shares once, then run or resume the Optuna study.

Order matters for "nothing half-written": the config, the storage URL and the data are all checked before
anything is trained or any row is written to storage.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.storages import fail_stale_trials

from latencysolver.cache import cache_root
from latencysolver.config.study import StudyConfig, config_from_dict, config_to_dict
from latencysolver.data.batches import EncodedSplit
from latencysolver.data.text import TextData
from latencysolver.errors import ConfigError, StorageError, first_line
from latencysolver.files import check_writable, writing
from latencysolver.latency.gating import usual_settings
from latencysolver.latency.hardware import HardwareFingerprint, busy_warning
from latencysolver.latency.protocol import LatencyStats, latency_inputs, measure_latency
from latencysolver.locks import storage_lock
from latencysolver.models.loading import count_parameters
from latencysolver.results.dashboard import save_study_note
from latencysolver.results.front import hardware_warning
from latencysolver.results.records import (
    BindingRecord,
    ConstraintsRecord,
    DataRecord,
    StudyRecord,
    TeacherRecord,
    study_record,
    write_study_record,
)
from latencysolver.results.siblings import reserved_by
from latencysolver.results.storage import (
    AtomicArtifactStore,
    check_storage,
    default_artifact_dir,
    find_study,
    load_existing_study,
    require_made_by_run,
    shown_url,
)
from latencysolver.search.binding import check_binding, check_given_teacher, check_objectives
from latencysolver.search.context import trial_context
from latencysolver.search.kinds import KINDS
from latencysolver.search.objective import make_objective, model_size_bytes, objectives
from latencysolver.search.preparation import (
    Prepared,
    RunOptions,
    baseline_reference_ms,
    prepare,
    prepare_test_split,
    study_hardware,
)
from latencysolver.search.probe import enqueue_usual_recipes, gated_space
from latencysolver.search.sharing import (
    check_output_folders,
    fetch_augmented,
    fetch_teacher,
    share_augmented,
    share_teacher,
)
from latencysolver.search.suggest import make_sampler, run_seed
from latencysolver.search.workers import (
    check_repeats_to_run,
    count_trials,
    open_storage,
    run_local_workers,
    summary_callback,
    work,
)
from latencysolver.stats import Interval, accuracy_interval, correct_of
from latencysolver.training.evaluate import Scores, predict_logits, scores

Log = Callable[[str], None]


def run_study(config: StudyConfig, options: RunOptions = RunOptions(), log: Log = print) -> optuna.Study:
    """``latencysolver run``: check the inputs, prepare the data, teacher and kinds, evaluate the teacher, record
    the study, gate the space on this hardware, share what workers need, then run the trials."""
    existing = _check_before_work(config, options)
    space = config.search_space.to_dict()

    def check_data(loaded: TextData) -> None:
        check_binding(config, existing, BindingRecord(data_fingerprint=loaded.fingerprint()), loaded.source)

    prepared = prepare(config, options, log, check_data=check_data)
    binding = BindingRecord(data_fingerprint=prepared.data.fingerprint(), teacher_key=prepared.teacher.key)
    check_binding(config, existing, binding)
    evaluated = _evaluate_teacher(config, prepared, options, log)
    study = _create_or_resume(config)  # first: a storage that refuses leaves no empty artifact folder behind
    artifact_dir = default_artifact_dir(config)
    with writing(artifact_dir, "artifacts folder"):
        artifact_dir.mkdir(parents=True, exist_ok=True)
    bound = dataclasses.replace(binding, search_space=space)
    write_study_record(study, _study_record(config, prepared, evaluated, bound, artifact_dir))
    gated, probe = gated_space(study, config, prepared.teacher.model, evaluated.inputs, evaluated.hardware, log)
    config = dataclasses.replace(config, search_space=gated)
    write_study_record(study, _searched_record(config, prepared.data.validation.majority_rate(), evaluated.hardware))
    _share(study, prepared, AtomicArtifactStore(artifact_dir))
    if config.usual_recipes and config.latency.device == "cpu":
        enqueue_usual_recipes(study, config, usual_settings(probe, keep_slow=not config.drop_slow_settings), log)
    save_study_note(study)
    if options.workers > 1:
        return run_local_workers(study, config, options, log)
    return _work(study, config, prepared, evaluated.inputs, evaluated.hardware, options, log)


def _check_before_work(config: StudyConfig, options: RunOptions) -> StudyRecord | None:
    """The study's name, storage, output folders, objectives and space, checked before anything is trained or
    written; the stored study's record when it is resumed."""
    sibling = reserved_by(config.name)  # `confirm` or `retrain` would take this study for its sibling
    if sibling is not None:
        raise ConfigError(
            f"{config.config_file}: name: {config.name!r} ends in {sibling.suffix!r}, which is reserved for the "
            f"{sibling.holds} `latencysolver {sibling.command}` keeps beside a study; pick another name",
            file=config.config_file,
            key="name",
            value=config.name,
        )
    check_storage(config.storage, writable=True)
    check_output_folders(config, options)
    stored = find_study(config.name, config.storage)
    if stored is not None:  # other objectives: refused before the teacher is fine-tuned
        check_objectives(stored, config)
    # a study is bound to its data, teacher and search space: refuse another before anything is trained or written
    existing = study_record(stored) if stored is not None else None
    check_binding(config, existing, BindingRecord(search_space=config.search_space.to_dict()))
    return existing


@dataclass(frozen=True)
class _TeacherEvaluation:
    """The teacher on the validation split and on this machine's latency rows."""

    quality: Scores
    predictions: list[int]
    interval: Interval
    latency: LatencyStats
    inputs: list  # the study's latency rows
    hardware: HardwareFingerprint


def _evaluate_teacher(config: StudyConfig, prepared: Prepared, options: RunOptions, log: Log) -> _TeacherEvaluation:
    """The teacher's validation accuracy (with its interval), F1 and latency, logged, with a warning when it is no
    better than the majority class."""
    validation, teacher, pad_id = prepared.validation, prepared.teacher, prepared.pad_id
    majority = prepared.data.validation.majority_rate()
    inputs = latency_inputs(validation, config.latency, pad_id)
    progress = options.progress
    logits = predict_logits(teacher.model, validation, pad_id=pad_id, desc="teacher evaluate", progress=progress)
    quality = scores(logits, validation.labels)
    predictions = logits.argmax(dim=-1).tolist()
    interval = accuracy_interval(correct_of(predictions, list(validation.labels)))
    latency = measure_latency(teacher.model, inputs, config.latency)
    hardware = study_hardware(config)
    log(
        f"teacher: validation accuracy {quality.accuracy:.3f} {interval.describe(estimate=False)}, "
        f"F1 {quality.f1:.3f}, "
        f"latency p50 {latency.p50_ms:.1f} ms (batch 1, {config.latency.threads} threads)"
    )
    if quality.accuracy <= majority + 0.005:
        log(
            f"warning: the teacher is no better than always answering the majority class ({majority:.3f}); "
            "students distilled from it learn nothing. Fine-tune longer (teacher.epochs) or pass --teacher PATH."
        )
    return _TeacherEvaluation(quality, predictions, interval, latency, inputs, hardware)


def _study_record(
    config: StudyConfig, prepared: Prepared, teacher: _TeacherEvaluation, binding: BindingRecord, artifact_dir: Path
) -> StudyRecord:
    """The study's first record: its teacher as evaluated, its data, its artifact folder, its binding."""
    data, model = prepared.data, prepared.teacher
    return StudyRecord(
        teacher=TeacherRecord(
            path=str(model.path),
            key=model.key,
            base_model=config.model,
            accuracy=teacher.quality.accuracy,
            f1=teacher.quality.f1,
            latency_p50_ms=teacher.latency.p50_ms,
            latency_p90_ms=teacher.latency.p90_ms,
            hardware_key=teacher.hardware.key,
            parameters=count_parameters(model.model),
            size_bytes=model_size_bytes(model.model),
            accuracy_interval=teacher.interval.to_dict(),
        ),
        teacher_predictions=teacher.predictions,
        data=DataRecord(
            source=data.source,
            train_rows=len(data.train),
            validation_rows=len(data.validation),
            test_rows=len(data.test) if data.test is not None else 0,
            majority_rate=data.validation.majority_rate(),
            max_length=config.data.max_length,
        ),
        artifact_dir=str(artifact_dir),
        config_file=config.config_file,
        search_space=binding.search_space,
        binding=binding,
    )


def _searched_record(config: StudyConfig, majority: float, hardware: HardwareFingerprint) -> StudyRecord:
    """What the search runs with once the space is gated on this hardware: the space, constraints and settings."""
    return StudyRecord(
        searched_space=config.search_space.to_dict(),
        constraints=ConstraintsRecord(
            min_accuracy=config.constraints.min_accuracy,
            max_latency_ms=config.constraints.max_latency_ms,
            min_accuracy_resolved=(
                config.constraints.min_accuracy
                if config.constraints.min_accuracy is not None
                else f"> {majority:.3f} (majority class)"
            ),
        ),
        distillation=dataclasses.asdict(config.distillation),
        latency=dataclasses.asdict(config.latency),
        config=config_to_dict(dataclasses.replace(config, storage="")),
        hardware=hardware.to_dict(),
    )


def _share(study: optuna.Study, prepared: Prepared, store: AtomicArtifactStore) -> None:
    """The teacher, what each kind prepared, and the augmented rows' labels, into the study's artifact store."""
    share_teacher(study, prepared.teacher, store)
    for kind in KINDS.values():
        kind.share(study, prepared, store)
    if prepared.augmented is not None and prepared.augmented.path is not None:
        share_augmented(study, prepared.augmented, store)


def prepare_stored(
    study: optuna.Study, storage_url: str, options: RunOptions, log: Log
) -> tuple[StudyConfig, Prepared]:
    """The stored study's config, and its data and teacher on this machine: the teacher's recorded folder when it
    is here, else the copy in the study's artifact store, else fine-tuned (``worker``, ``remeasure``)."""
    name = study.study_name
    record = study_record(study)
    raw = record.config
    assert raw is not None  # require_made_by_run checked it
    check_given_teacher(study, storage_url, options.teacher_path)
    config = dataclasses.replace(config_from_dict(raw, f"study {name!r}"), storage=storage_url, name=name)
    check_writable(cache_root(options.cache_dir), "--cache-dir" if options.cache_dir else "cache folder", folder=True)
    if record.artifact_dir:
        check_writable(record.artifact_dir, "artifacts folder", folder=True)
    teacher_path = options.teacher_path
    recorded = record.teacher.path if record.teacher else None
    if teacher_path is None and recorded and Path(recorded).is_dir():
        teacher_path = recorded  # the same machine, or a shared file system: never fine-tune it again
    elif teacher_path is None:
        fetched = fetch_teacher(study, cache_root(options.cache_dir), log)
        teacher_path = str(fetched) if fetched else None
    options = dataclasses.replace(options, teacher_path=teacher_path)
    for kind in KINDS.values():  # what a kind prepared (the elastic student): copied into this cache once
        options = kind.fetch(study, config, options, log)
    augmented_path = options.augmented_path
    if augmented_path is None:  # the teacher's labels of the augmented rows: copied once, never labelled again
        fetched = fetch_augmented(study, cache_root(options.cache_dir), log)
        augmented_path = str(fetched) if fetched else None
    prepared = prepare(
        config,
        dataclasses.replace(options, augmented_path=augmented_path),
        log,
        # the recorded data folder, read on this machine: refuse it if it holds other rows than the study's
        check_data=lambda loaded: check_binding(
            config, record, BindingRecord(data_fingerprint=loaded.fingerprint()), loaded.source
        ),
    )
    return config, prepared


def join_study(
    name: str, storage_url: str, options: RunOptions = RunOptions(), log: Log = print, max_trials: int | None = None
) -> optuna.Study:
    """``latencysolver worker``: run trials of a study that ``run`` created, from this or another machine."""
    check_storage(storage_url, must_exist=True, writable=True)  # a worker writes trials: a read-only file is refused
    study = load_existing_study(name, storage_url)
    require_made_by_run(study, storage_url, to_run_trials=True)
    check_repeats_to_run(study)  # a sibling whose enqueued trials were interrupted: before any teacher is prepared
    record = study_record(study)
    config, prepared = prepare_stored(study, storage_url, options, log)
    inputs = latency_inputs(prepared.validation, config.latency, prepared.pad_id)
    hardware = study_hardware(config)
    config = dataclasses.replace(
        config, search_space=gated_space(study, config, prepared.teacher.model, inputs, hardware, log)[0]
    )
    # Each worker samples with its own seed: the same seed in every process would propose the same trials.
    return _work(
        study,
        config,
        prepared,
        inputs,
        hardware,
        options,
        log,
        max_trials=max_trials,
        seed_offset=os.getpid(),
        test=prepare_test_split(prepared, config, options, log) if record.sibling_of else None,
    )


def _work(
    study: optuna.Study,
    config: StudyConfig,
    prepared: Prepared,
    inputs: list,
    hardware: HardwareFingerprint,
    options: RunOptions,
    log: Log,
    max_trials: int | None = None,
    seed_offset: int = 0,
    test: tuple[EncodedSplit, torch.Tensor] | None = None,
) -> optuna.Study:
    storage = open_storage(config.storage, config.workers)
    study = optuna.load_study(study_name=study.study_name, storage=storage)
    with warnings.catch_warnings():  # a trial whose worker died is failed (and its retry queued) before the count
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)
    counts = count_trials(study)
    if counts.taken >= config.n_trials and not counts.waiting:
        log(f"study {config.name!r}: all {config.n_trials} trials already finished or running; nothing to run")
        return study
    # a resumed study (or a joining worker) samples afresh: re-seeded as its first run, it would repeat its recipes
    seed = run_seed(config.sampler.seed, len(study.get_trials(deepcopy=False)), seed_offset)
    if seed is not None:
        with storage_lock(storage.engine, f"latencysolver:{study.study_name}"):  # workers append at the same time
            write_study_record(study, StudyRecord(sampler_seeds=[*(study_record(study).sampler_seeds or []), seed]))
    sampler = make_sampler(dataclasses.replace(config, sampler=dataclasses.replace(config.sampler, seed=seed)))
    study = optuna.load_study(study_name=study.study_name, storage=storage, sampler=sampler)
    log(
        f"study {config.name!r}: {counts.finished} trials finished, {counts.running} running; "
        f"working towards {config.n_trials} (storage {shown_url(config.storage)})"
    )
    artifact_dir = study_record(study).artifact_dir or str(default_artifact_dir(config))
    with writing(artifact_dir, "artifacts folder"):
        Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    ctx = trial_context(
        config,
        prepared,
        inputs,
        AtomicArtifactStore(artifact_dir),
        hardware,
        progress=options.progress,
        majority_rate=prepared.data.validation.majority_rate(),
        teacher_predictions=_teacher_predictions(study, len(prepared.validation)),
        test=test,
        baseline_reference_ms=baseline_reference_ms(
            study_record(study).teacher, prepared.teacher.model, inputs, config.latency, hardware.key
        ),
        throughput=True,
    )
    log(f"latency: {hardware.describe()} [{hardware.key}]")
    warning = busy_warning(config.latency.threads)
    if warning:
        log(warning)
    work(
        study,
        storage,
        make_objective(ctx),
        config.n_trials,
        max_trials=max_trials,
        callbacks=(summary_callback(log, time.perf_counter()),),
        only_enqueued=bool(study_record(study).sibling_of),
    )
    save_study_note(study)  # now with the fingerprints of the trials' machines
    warning = hardware_warning(study)
    if warning:
        log(warning)
    return study


def _teacher_predictions(study: optuna.Study, rows: int) -> torch.Tensor | None:
    """The teacher's validation predictions that ``run`` recorded (None for a study made before 0.2)."""
    recorded = study_record(study).teacher_predictions
    return torch.tensor(recorded) if isinstance(recorded, list) and len(recorded) == rows else None


def _create_or_resume(config: StudyConfig) -> optuna.Study:
    sampler = make_sampler(config)
    _, directions = objectives(config.latency.objective)
    try:
        study = optuna.create_study(
            study_name=config.name, storage=config.storage, sampler=sampler, directions=directions, load_if_exists=True
        )
    except Exception as exc:  # noqa: BLE001 - Optuna and the driver raise many types; each is "cannot open"
        raise StorageError(
            f"--storage {shown_url(config.storage)!r}: cannot open study {config.name!r}: {first_line(exc)}"
        ) from None
    names = check_objectives(study, config)
    if study.metric_names != names:
        with warnings.catch_warnings():  # "experimental since v3.2": stable in practice, and what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    return study
