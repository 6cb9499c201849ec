"""Orchestration: check inputs, build what every trial shares once, then run or resume the Optuna study.

Order matters for "nothing half-written": the config, the storage URL and the data are all checked before
anything is trained or any row is written to storage.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from latencysolver.batches import EncodedSplit, encode_split
from latencysolver.cache import cache_root
from latencysolver.config import Choices, SearchSpace, StudyConfig, config_from_dict, config_to_dict
from latencysolver.dashboard import save_study_note
from latencysolver.data import BoolQData, load_boolq
from latencysolver.errors import StorageError, first_line
from latencysolver.evaluate import predict_logits, scores
from latencysolver.gating import PROBE_LAYERS, ProbeResult, gate_space, probe_hardware
from latencysolver.hardware import HardwareFingerprint, hardware_fingerprint
from latencysolver.latency import latency_inputs, measure_latency, model_device, throughput_inputs
from latencysolver.models import count_parameters, load_tokenizer
from latencysolver.objective import (
    TrialContext,
    is_feasible,
    make_objective,
    model_size_bytes,
    objectives,
)
from latencysolver.recipe import Recipe
from latencysolver.student import to_runnable
from latencysolver.locks import file_lock
from latencysolver.teacher import MARKER as TEACHER_MARKER
from latencysolver.teacher import Teacher, prepare_teacher
from latencysolver.workers import count_trials, open_storage, spawn_workers, sqlite_warning, work

Log = Callable[[str], None]
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


# ------------------------------------------------------------------------------------------------ storage


def check_storage(url: str, *, must_exist: bool = False) -> None:
    """Parse and reach the storage without writing to it; a SQLite file is only created by the study itself."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        hidden = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)  # no password in the message
        raise StorageError(f"--storage: cannot parse {hidden!r} as a database URL "
                           "(e.g. sqlite:///latencysolver.db or postgresql+psycopg://user:pw@host/db)") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StorageError(f"--storage {shown!r}: an in-memory SQLite database keeps nothing; name a file")
        path = Path(parsed.database)
        if must_exist and not path.is_file():
            raise StorageError(f"--storage {shown!r}: no such database file {str(path)!r}")
        if not path.parent.is_dir():
            raise StorageError(f"--storage {shown!r}: folder {str(path.parent)!r} does not exist")
        return
    try:
        engine = create_engine(parsed)
    except (NoSuchModuleError, ImportError) as exc:
        raise StorageError(f"--storage {shown!r}: unknown database driver: {first_line(exc)}") from None
    try:
        with engine.connect():
            pass
    except Exception as exc:
        raise StorageError(f"--storage {shown!r}: cannot connect: {first_line(exc)}") from None
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
    check_storage(storage, must_exist=True)
    shown = _shown(storage)
    # Optuna writes its schema into any database it opens: look into a SQLite file read-only first, so that an
    # empty file or a file that is no database stays exactly as it was.
    names = _sqlite_study_names(storage)
    if names is not None and name not in names:
        raise StorageError(f"--study: no study named {name!r} in {shown!r} (studies there: {names})")
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StorageError(f"--study: no study named {name!r} in {shown!r} (studies there: {names})") from None
    except Exception as exc:  # a database Optuna cannot read (another schema, say)
        raise StorageError(f"--storage {shown!r}: cannot read studies: {first_line(exc)}") from None


def _sqlite_study_names(url: str) -> list[str] | None:
    """Study names in a SQLite storage, read without writing; None for other databases."""
    import sqlite3

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    try:
        with sqlite3.connect(f"file:{parsed.database}?mode=ro", uri=True) as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='studies'").fetchone():
                return []  # an empty file, or a database without Optuna's tables
            return [row[0] for row in db.execute("SELECT study_name FROM studies ORDER BY study_id")]
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"--storage {_shown(url)!r}: {parsed.database!r} is not an Optuna SQLite database "
                           f"({exc})") from None


def artifact_store_of(study: optuna.Study, override: str | None = None) -> FileSystemArtifactStore:
    folder = override or study.user_attrs.get("artifact_dir")
    if not folder or not Path(folder).is_dir():
        raise StorageError(f"study {study.study_name!r}: artifact folder {folder!r} not found (pass --artifacts)")
    return FileSystemArtifactStore(str(folder))


# ------------------------------------------------------------------------------------------------ run


@dataclass(frozen=True)
class RunOptions:
    cache_dir: str | None = None
    teacher_path: str | None = None
    progress: bool = True
    workers: int = 1  # local worker processes `run` starts (1: trials run in this process)


@dataclass
class Prepared:
    """What a study (or a benchmark) needs before its first trial: data, encoded splits and the teacher."""

    data: BoolQData
    train: EncodedSplit
    validation: EncodedSplit
    teacher: Teacher
    tokenizer: Any
    pad_id: int
    cache_root: Path


def prepare(config: StudyConfig, options: RunOptions = RunOptions(), log: Log = print) -> Prepared:
    """Load and encode the data, then fine-tune (or load the cached) teacher; writes nothing to storage."""
    data = load_boolq(config.data.source, limit_train=config.data.limit_train,
                      limit_validation=config.data.limit_validation, limit_test=config.data.limit_test)
    log(f"data: {data.source}: {len(data.train)} train / {len(data.validation)} validation rows "
        f"(majority class {data.validation.majority_rate():.1%} of validation)")
    root = cache_root(options.cache_dir)
    tokenizer = load_tokenizer(config.model)
    pad_id = tokenizer.pad_token_id or 0
    train, validation = (encode_split(split, tokenizer, config.data.max_length, root, config.model)
                         for split in (data.train, data.validation))
    teacher = prepare_teacher(config, train, data.train.fingerprint(), root, teacher_path=options.teacher_path,
                              pad_id=pad_id, progress=options.progress, log=log)
    return Prepared(data=data, train=train, validation=validation, teacher=teacher, tokenizer=tokenizer,
                    pad_id=pad_id, cache_root=root)


def run_study(config: StudyConfig, options: RunOptions = RunOptions(), log: Log = print) -> optuna.Study:
    check_storage(config.storage)
    prepared = prepare(config, options, log)
    data, train, validation, teacher, pad_id = (prepared.data, prepared.train, prepared.validation,
                                                prepared.teacher, prepared.pad_id)
    majority = data.validation.majority_rate()
    inputs = latency_inputs(validation, config.latency, pad_id)
    teacher_quality = scores(predict_logits(teacher.model, validation, pad_id=pad_id, desc="teacher evaluate",
                                            progress=options.progress), validation.labels)
    teacher_latency = measure_latency(teacher.model, inputs, config.latency)
    hardware = hardware_fingerprint(config.latency.threads, model_device(teacher.model).type)
    log(f"teacher: validation accuracy {teacher_quality.accuracy:.3f}, F1 {teacher_quality.f1:.3f}, "
        f"latency p50 {teacher_latency.p50_ms:.1f} ms (batch 1, {config.latency.threads} threads)")
    if teacher_quality.accuracy <= majority + 0.005:
        log(f"warning: the teacher is no better than always answering the majority class ({majority:.3f}); "
            "students distilled from it learn nothing. Fine-tune longer (teacher.epochs) or pass --teacher PATH.")

    artifact_dir = default_artifact_dir(config)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    study = _create_or_resume(config)
    study.set_user_attr("teacher", {
        "path": str(teacher.path), "key": teacher.key, "base_model": config.model,
        "accuracy": teacher_quality.accuracy, "f1": teacher_quality.f1,
        "latency_p50_ms": teacher_latency.p50_ms, "latency_p90_ms": teacher_latency.p90_ms,
        "hardware_key": hardware.key,
        "parameters": count_parameters(teacher.model), "size_bytes": model_size_bytes(teacher.model)})
    study.set_user_attr("data", {"source": data.source, "train_rows": len(data.train),
                                 "validation_rows": len(data.validation),
                                 "test_rows": len(data.test) if data.test is not None else 0,
                                 "majority_rate": majority,
                                 "max_length": config.data.max_length})
    study.set_user_attr("artifact_dir", str(artifact_dir))
    study.set_user_attr("config_file", config.config_file)
    study.set_user_attr("search_space", config.search_space.to_dict())
    config = dataclasses.replace(config, search_space=_gated_space(study, config, teacher.model, inputs, hardware, log))
    study.set_user_attr("searched_space", config.search_space.to_dict())
    study.set_user_attr("constraints", dataclasses.asdict(config.constraints) | {
        "min_accuracy_resolved": (config.constraints.min_accuracy if config.constraints.min_accuracy is not None
                                  else f"> {majority:.3f} (majority class)")})
    study.set_user_attr("distillation", dataclasses.asdict(config.distillation))
    study.set_user_attr("latency", dataclasses.asdict(config.latency))

    study.set_user_attr("config", config_to_dict(dataclasses.replace(config, storage="")))
    study.set_user_attr("hardware", hardware.to_dict())
    _share_teacher(study, teacher, FileSystemArtifactStore(str(artifact_dir)))
    save_study_note(study)
    if options.workers > 1:
        return _run_local_workers(study, config, options, log)
    return _work(study, config, prepared, inputs, hardware, options, log)


def _run_local_workers(study: optuna.Study, config: StudyConfig, options: RunOptions, log: Log) -> optuna.Study:
    warning = sqlite_warning(config.storage, options.workers)
    if warning:
        log(warning)
    extra = [*(["--cache-dir", options.cache_dir] if options.cache_dir else []),
             *(["--teacher", options.teacher_path] if options.teacher_path else []), "--no-progress"]
    log(f"study {config.name!r}: starting {options.workers} local workers (storage {config.storage})")
    processes = spawn_workers(options.workers, config.name, config.storage, extra)
    try:
        codes = [p.wait() for p in processes]
    except KeyboardInterrupt:  # Ctrl-C reaches the workers too (same process group); wait for their clean exit
        codes = [p.wait() for p in processes]
        raise
    if any(codes):
        raise StorageError(f"study {config.name!r}: {sum(c != 0 for c in codes)} of {len(codes)} workers "
                           f"exited with an error (exit codes {codes})")
    return optuna.load_study(study_name=config.name, storage=config.storage)


def _share_teacher(study: optuna.Study, teacher: Teacher, store: FileSystemArtifactStore) -> None:
    """Put the fine-tuned teacher in the study's artifact store once, for workers on other machines."""
    shared = study.user_attrs.get("teacher_artifacts", {})
    if shared.get("key") == teacher.key:
        return
    files = {p.name: upload_artifact(artifact_store=store, file_path=str(p), study_or_trial=study)
             for p in sorted(teacher.path.iterdir()) if p.is_file()}
    study.set_user_attr("teacher_artifacts", {"key": teacher.key, "files": files})


def _fetch_teacher(study: optuna.Study, root: Path, log: Log) -> Path | None:
    """A worker on a machine without the teacher: copy it from the artifact store into this cache, once."""
    shared = study.user_attrs.get("teacher_artifacts")
    artifact_dir = study.user_attrs.get("artifact_dir")
    if not shared or not artifact_dir or not Path(artifact_dir).is_dir():
        return None  # nothing shared: prepare() fine-tunes it here (under the cache lock)
    target = root / "teachers" / shared["key"]
    with file_lock(root / "teachers" / f"{shared['key']}.lock"):
        if (target / TEACHER_MARKER).is_file():
            return target
        store = FileSystemArtifactStore(artifact_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        for name, artifact_id in shared["files"].items():
            download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(staging / name))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log(f"teacher: copied from the study's artifact store -> {target}")
    return target


def join_study(name: str, storage_url: str, options: RunOptions = RunOptions(), log: Log = print,
               max_trials: int | None = None) -> optuna.Study:
    """``latencysolver worker``: run trials of a study that ``run`` created, from this or another machine."""
    study = load_existing_study(name, storage_url)
    raw = study.user_attrs.get("config")
    if not raw:
        raise StorageError(f"study {name!r} in {_shown(storage_url)!r} was not created by `latencysolver run` "
                           "(it has no 'config' attribute); start it with `latencysolver run STUDY.yaml` first")
    config = dataclasses.replace(config_from_dict(raw, f"study {name!r}"), storage=storage_url)
    teacher_path = options.teacher_path
    recorded = study.user_attrs.get("teacher", {}).get("path")
    if teacher_path is None and recorded and Path(recorded).is_dir():
        teacher_path = recorded  # the same machine, or a shared file system: never fine-tune it again
    elif teacher_path is None:
        fetched = _fetch_teacher(study, cache_root(options.cache_dir), log)
        teacher_path = str(fetched) if fetched else None
    prepared = prepare(config, dataclasses.replace(options, teacher_path=teacher_path), log)
    inputs = latency_inputs(prepared.validation, config.latency, prepared.pad_id)
    hardware = hardware_fingerprint(config.latency.threads, model_device(prepared.teacher.model).type)
    config = dataclasses.replace(config, search_space=_gated_space(study, config, prepared.teacher.model, inputs,
                                                                    hardware, log))
    # Each worker samples with its own seed: the same seed in every process would propose the same trials.
    if config.sampler.seed is not None:
        config = dataclasses.replace(config, sampler=dataclasses.replace(
            config.sampler, seed=config.sampler.seed + os.getpid()))
    return _work(study, config, prepared, inputs, hardware, options, log, max_trials=max_trials)


def _work(study: optuna.Study, config: StudyConfig, prepared: Prepared, inputs: list,
          hardware: HardwareFingerprint, options: RunOptions, log: Log,
          max_trials: int | None = None) -> optuna.Study:
    storage = open_storage(config.storage, config.workers)
    study = optuna.load_study(study_name=study.study_name, storage=storage, sampler=_make_sampler(config))
    counts = count_trials(study)
    if counts.taken >= config.n_trials and not counts.waiting:
        log(f"study {config.name!r}: all {config.n_trials} trials already finished or running; nothing to run")
        return study
    log(f"study {config.name!r}: {counts.finished} trials finished, {counts.running} running; "
        f"working towards {config.n_trials} (storage {_shown(config.storage)})")
    artifact_dir = study.user_attrs.get("artifact_dir") or str(default_artifact_dir(config))
    validation, pad_id = prepared.validation, prepared.pad_id
    ctx = TrialContext(config=config, teacher_model=prepared.teacher.model,
                       teacher_train_logits=prepared.teacher.train_logits, train=prepared.train,
                       validation=validation, latency_inputs=inputs,
                       artifact_store=FileSystemArtifactStore(artifact_dir), hardware=hardware,
                       throughput_inputs=(throughput_inputs(validation, config.latency,
                                                            config.latency.throughput_batch_size, pad_id)
                                          if config.latency.throughput_batch_size else None),
                       pad_id=pad_id, progress=options.progress,
                       majority_rate=prepared.data.validation.majority_rate())
    log(f"latency: {hardware.describe()} [{hardware.key}]")
    work(study, storage, make_objective(ctx), config.n_trials, max_trials=max_trials,
         callbacks=(_summary_callback(log, time.perf_counter()),))
    save_study_note(study)  # now with the fingerprints of the trials' machines
    warning = hardware_warning(study)
    if warning:
        log(warning)
    return study


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _gated_space(study: optuna.Study, config: StudyConfig, teacher: torch.nn.Module, inputs: list,
                 hardware: HardwareFingerprint, log: Log) -> SearchSpace:
    """Probe once per study (stored in ``hardware_probe``), then drop the settings that cannot buy speed."""
    space = config.search_space
    stored = study.user_attrs.get("hardware_probe")
    settings = space.quant_dtype.values if isinstance(space.quant_dtype, Choices) else ()
    if stored and set(settings) <= set(stored["speedup"]) | set(stored["errors"]):
        probe = ProbeResult.from_dict(stored)
        if probe.hardware_key != hardware.key:
            log(f"note: this study's hardware probe ran on [{probe.hardware_key}], this worker is "
                f"[{hardware.key}]; keeping the study's probe so that every trial searches the same space")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            def convert(model: torch.nn.Module, setting: str):
                return to_runnable(model, setting, inputs[0], Path(tmp) / setting, config.latency.threads)

            probe = probe_hardware(teacher, inputs[:8], config.latency, convert, ("fp32", *settings))
        study.set_user_attr("hardware_probe", probe.to_dict())
    if probe.speedup or probe.errors:
        measured = ", ".join(f"{k} {v:.2f}x" for k, v in probe.speedup.items())
        log(f"hardware probe: speed-up over fp32 on a {PROBE_LAYERS}-layer cut of the teacher: {measured}"
            + (f"; cannot run: {', '.join(probe.errors)}" if probe.errors else ""))
    if not config.drop_slow_settings:
        return space
    gated, dropped = gate_space(space, probe)
    for setting, reason in dropped.items():
        log(f"hardware gating: quant_dtype {setting} dropped from the search ({reason}); "
            "--keep-slow-settings keeps it")
    return gated


def _create_or_resume(config: StudyConfig) -> optuna.Study:
    sampler = _make_sampler(config)
    names, directions = objectives(config.latency.objective)
    try:
        study = optuna.create_study(study_name=config.name, storage=config.storage, sampler=sampler,
                                    directions=directions, load_if_exists=True)
    except Exception as exc:
        raise StorageError(f"--storage {_shown(config.storage)!r}: cannot open study {config.name!r}: "
                           f"{first_line(exc)}") from None
    found = [d.name.lower() for d in study.directions]
    if found != directions or (study.metric_names and study.metric_names != names):
        raise StorageError(f"study {config.name!r} in {_shown(config.storage)!r} optimizes {study.metric_names or found}, "
                           f"but {config.config_file} asks for {names} (latency.objective: "
                           f"{config.latency.objective}); pick another study name")
    if study.metric_names != names:
        with warnings.catch_warnings():  # "experimental since v3.2": stable in practice, and what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    return study


def _make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """TPE and NSGA-II read the constraints each trial sets (``trial.set_constraint``); random search ignores them."""
    seed = config.sampler.seed
    if config.sampler.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if config.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = {} if config.sampler.startup_trials is None else {"n_startup_trials": config.sampler.startup_trials}
    return optuna.samplers.TPESampler(seed=seed, **startup)


def _summary_callback(log: Log, started: float) -> Callable[[optuna.Study, FrozenTrial], None]:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        seconds = trial.user_attrs.get("seconds") or (trial.duration.total_seconds() if trial.duration else 0.0)
        recipe = trial.user_attrs.get("recipe")
        what = Recipe.from_dict(recipe).describe() if recipe else ""
        if trial.state == TrialState.COMPLETE:
            a = trial.user_attrs
            log(f"trial {trial.number:>3}  acc {trial.values[0]:.3f}  {a['latency_p50_ms']:7.2f} ms  "
                f"{a['speedup']:4.1f}x ±{a['speedup_cv']:.0%}  {what}  [{seconds:.0f}s]")
        else:
            log(f"trial {trial.number:>3}  {trial.state.name}  {trial.user_attrs.get('fail_reason', '')}  {what}")

    return callback


# ------------------------------------------------------------------------------------------------ results


def _slowness(study: optuna.Study) -> Callable[[FrozenTrial], float]:
    """Sort key, fastest first, whichever latency figure the study optimizes (ms ↓ or speed-up ↑)."""
    minimize = study.directions[1] == StudyDirection.MINIMIZE
    return lambda t: t.values[1] if minimize else -t.values[1]


def feasible_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_feasible(t)]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The front of the *feasible* trials (constraints met), most accurate first."""
    slowness = _slowness(study)
    candidates = feasible_trials(study)
    key = [(-t.values[0], slowness(t)) for t in candidates]  # both minimized

    def dominated(i: int) -> bool:
        return any(a[0] <= key[i][0] and a[1] <= key[i][1] and a != key[i] for a in key)

    front = [t for i, t in enumerate(candidates) if not dominated(i)]
    return sorted(front, key=lambda t: (-t.values[0], slowness(t), t.number))


def hardware_warning(study: optuna.Study) -> str | None:
    """A warning when the front's latencies were measured on different hardware (or threads, or versions)."""
    keys: dict[str, list[int]] = {}
    for t in pareto_trials(study):
        keys.setdefault(t.user_attrs.get("hardware_key", "unknown"), []).append(t.number)
    if len(keys) < 2:
        return None
    groups = "; ".join(f"{key}: trials {numbers}" for key, numbers in sorted(keys.items()))
    advice = ("compare speed-ups, not milliseconds" if study.directions[1] == StudyDirection.MAXIMIZE
              else "their milliseconds are not comparable; set latency.objective: speedup")
    return (f"warning: study {study.study_name!r}: the Pareto front mixes latencies measured on "
            f"{len(keys)} different hardware fingerprints ({groups}); {advice}")


def pick_best(study: optuna.Study, tolerance: float = 0.01) -> FrozenTrial:
    """The fastest front trial within ``tolerance`` accuracy of the teacher; else the most accurate one.

    The ``near-teacher`` rule of ``latencysolver.selection`` (where the other rules live too)."""
    from latencysolver.selection import select_best

    return select_best(study, "near-teacher", tolerance).trial


def get_trial(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise StorageError(f"--trial: study {study.study_name!r} has no trial {number} (trials 0..{len(trials) - 1})")
    trial = trials[number]
    if trial.state != TrialState.COMPLETE:
        raise StorageError(f"--trial: trial {number} of {study.study_name!r} is {trial.state.name}, not COMPLETE")
    return trial


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in pareto_trials(study):
        recipe = Recipe.from_dict(t.user_attrs["recipe"])
        rows.append({"trial": t.number, "accuracy": t.values[0], "f1": t.user_attrs.get("f1"),
                     "latency_ms": t.user_attrs.get("latency_p50_ms"), "speedup": t.user_attrs.get("speedup"),
                     "speedup_cv": t.user_attrs.get("speedup_cv"), "hardware_key": t.user_attrs.get("hardware_key"),
                     "layers": t.user_attrs.get("layers"), "parameters": t.user_attrs.get("parameters"),
                     "size_mb": t.user_attrs.get("size_bytes", 0) / 1e6, "recipe": recipe.describe()})
    return rows
