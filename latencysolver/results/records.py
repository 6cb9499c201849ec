"""What a trial and a study record, as typed values, read from and written to Optuna's user attrs.

Readers take a ``TrialRecord`` / ``StudyRecord``; ``search`` writes through ``write_*``.  What a trial is enqueued
with and the rungs it reports are read and written in ``attributes.py``: no other module names a stored key.  The
stored keys and JSON shapes are those of the 0.1.0 release, so studies written by it still load
(tests/data/study-v0.1.db).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from latencysolver.config.recipe import Recipe
from latencysolver.config.space import SearchSpace
from latencysolver.errors import StorageError, first_line
from latencysolver.latency.hardware import HardwareFingerprint
from latencysolver.stats import Interval, PairedComparison

if TYPE_CHECKING:
    from latencysolver.latency.stability import StabilityCheck  # it imports the protocol, hence torch

# Every trial uploads these; the student's own files (``save_student``) and model.onnx come on top.
PREDICTIONS = "predictions.json"
LATENCY_SAMPLES = "latency_samples.json"
CONSTRAINT_NAMES = ("min_accuracy", "max_latency_ms", "min_speedup")  # the last only where a study sets it
LEGACY_CONSTRAINTS = "constraints"  # the user-attr list 0.1.0 wrote beside set_constraint; read, never written


def constraint_values(trial: FrozenTrial) -> dict[str, float]:
    """Optuna's own record (``trial.set_constraint``, read with the public ``FrozenTrial.constraints``); a trial
    without one falls back to the legacy user-attr list (hand-made and pre-0.1.0 trials carry only that)."""
    if trial.constraints:
        return dict(trial.constraints)
    legacy = trial.user_attrs.get(LEGACY_CONSTRAINTS) or []
    # not strict: a hand-made legacy list may be shorter; the names it lacks are simply not recorded
    return {name: float(v) for name, v in zip(CONSTRAINT_NAMES, legacy, strict=False)}


def _met(constraints: dict[str, float]) -> bool:
    """Every constraint value <= 0 (Optuna's convention); a trial with none recorded is feasible."""
    return all(v <= 0.0 for v in constraints.values())


def is_feasible(trial: FrozenTrial) -> bool:
    return _met(constraint_values(trial))


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its objectives, recipe and measurements; None where the trial recorded nothing (a FAIL)."""

    number: int
    state: TrialState
    values: tuple[float, ...] | None = None  # accuracy, then the latency objective
    recipe: Recipe | None = None  # None when absent or unreadable (``recipe_error`` says why)
    recipe_dict: dict[str, Any] | None = None  # as stored: the export card and the knob figures show it as is
    recipe_error: str | None = None
    f1: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_cv: float | None = None
    speedup: float | None = None
    speedup_cv: float | None = None
    reference_p50_ms: float | None = None  # the teacher's p50, paired with this trial's calls
    hardware: dict[str, Any] | None = None  # HardwareFingerprint.to_dict() of the measuring machine
    hardware_key: str | None = None
    parameters: int | None = None
    nonzero_parameters: int | None = None
    size_bytes: int | None = None
    layers: int | None = None
    kept_layers: tuple[int, ...] | None = None
    distill_steps: int | None = None
    distill_final_loss: float | None = None
    degenerate: bool | None = None
    # {"step", "accuracy_on_check_rows", "reason": "floor" | "rung", and "floor" or "rung" (the decision)}
    early_stopped: dict[str, Any] | None = None
    rungs: list[dict[str, Any]] | None = None  # per-trial rungs reached: search/rungs.py RungDecision.to_dict()
    # latency first: {"speedup", "min_speedup"} of a trial below constraints.min_speedup, recorded untrained
    rejected_before_training: dict[str, Any] | None = None
    elastic: dict[str, Any] | None = None  # trial_mode elastic: {"key", "heads", "neurons", "layers", "recovery_steps"}
    throughput_rows_per_s: float | None = None
    seconds: float | None = None
    # on the validation rows: Interval.to_dict() of the accuracy (Wilson), PairedComparison.to_dict()
    # against the teacher's predictions on the same rows; None for a trial stopped early or made before 0.2
    accuracy_interval: dict[str, Any] | None = None
    vs_teacher: dict[str, Any] | None = None
    # a seed repeat (``latencysolver confirm``): the search trial it repeats, and the test split, which only
    # repeats and exports measure (the test split checks, it never selects)
    repeat_of: int | None = None
    test_accuracy: float | None = None
    test_accuracy_interval: dict[str, Any] | None = None
    test_vs_teacher: dict[str, Any] | None = None
    # ``latencysolver retrain``: the search trial retrained and its distillation steps (measured on test too)
    retrain_of: int | None = None
    retrain_steps: int | None = None
    # StabilityCheck.to_dict() of the kept latency measurement; an unstable one keeps the trial off the front
    # and out of --best until `latencysolver remeasure` times it again (None: a trial made before the check)
    latency_stability: dict[str, Any] | None = None
    # one of the usual recipes every study starts with: the teacher as is, in this quant_dtype, untrained
    baseline: str | None = None
    # the student's distillation left it worse on the check rows than its untrained start, which it kept:
    # {"start_accuracy_on_check_rows", "trained_accuracy_on_check_rows", "steps"}
    kept_start: dict[str, Any] | None = None
    fail_reason: str | None = None
    constraints: dict[str, float] = dataclasses.field(default_factory=dict)  # name -> value, <= 0 is met

    @property
    def accuracy(self) -> float | None:
        return self.values[0] if self.values else None

    @property
    def feasible(self) -> bool:
        return _met(self.constraints)

    def fingerprint(self) -> HardwareFingerprint | None:
        """The measuring machine, or None when not recorded or recorded by another version."""
        return _fingerprint(self.hardware)

    def interval(self) -> Interval | None:
        """The 95% interval of the validation accuracy, or None when not recorded (or unreadable)."""
        return _from_dict(Interval, self.accuracy_interval)

    def paired(self) -> PairedComparison | None:
        """This trial against the teacher on the same validation rows, or None when not recorded."""
        return _from_dict(PairedComparison, self.vs_teacher)

    def stability(self) -> StabilityCheck | None:
        from latencysolver.latency.stability import StabilityCheck

        return _from_dict(StabilityCheck, self.latency_stability)

    @property
    def latency_unstable(self) -> bool:
        """The latency check found the kept measurement unstable (and no remeasurement has cleared it)."""
        check = self.stability()
        return check is not None and not check.stable


def _from_dict(cls: Any, raw: Any) -> Any:
    if not isinstance(raw, dict):
        return None
    try:
        return cls.from_dict(raw)
    except (KeyError, TypeError, ValueError):  # another version's shape: shown as not recorded
        return None


# the measurements run_trial writes, each under its own field name (the 0.1.0 keys)
MEASURED = tuple(
    f.name
    for f in dataclasses.fields(TrialRecord)
    if f.name
    not in ("number", "state", "values", "recipe", "recipe_dict", "recipe_error", "fail_reason", "constraints")
)
_TUPLES = ("kept_layers",)


def _fingerprint(raw: Any) -> HardwareFingerprint | None:
    if not isinstance(raw, dict):
        return None
    try:
        return HardwareFingerprint.from_dict(raw)
    except TypeError:
        return None


def trial_record(trial: FrozenTrial) -> TrialRecord:
    a = trial.user_attrs
    raw = a.get("recipe")
    recipe, error = None, None
    if isinstance(raw, dict):
        try:
            recipe = Recipe.from_dict(raw)
        except (TypeError, ValueError) as exc:
            error = first_line(exc)
    measured: dict[str, Any] = {k: a[k] for k in MEASURED if k in a}
    for k in _TUPLES:
        if measured.get(k) is not None:
            measured[k] = tuple(measured[k])
    return TrialRecord(
        number=trial.number,
        state=trial.state,
        values=tuple(trial.values) if trial.values is not None else None,
        recipe=recipe,
        recipe_dict=raw if isinstance(raw, dict) else None,
        recipe_error=error,
        fail_reason=a.get("fail_reason"),
        constraints=constraint_values(trial),
        **measured,
    )


def write_recipe(trial: optuna.Trial, recipe: Recipe) -> None:
    """Right after suggesting: a worker killed later still leaves which recipe it was running."""
    trial.set_user_attr("recipe", recipe.to_dict())


def write_trial_record(trial: optuna.Trial, record: TrialRecord) -> None:
    """The measurements (each non-None field under its key) and the constraints, through ``set_constraint``
    only: samplers, the dashboard and ``study.best_trials`` read them there, and so does ``is_feasible``."""
    for key in MEASURED:
        value = getattr(record, key)
        if value is not None:
            trial.set_user_attr(key, list(value) if key in _TUPLES else value)
    for name, value in record.constraints.items():
        trial.set_constraint(name, value)


def write_fail_reason(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("fail_reason", reason[:500])


INTERRUPTED = "interrupted"  # a fail_reason starting with it: Ctrl-C or SIGTERM stopped the worker, not the recipe


def was_interrupted(trial: FrozenTrial) -> bool:
    """A FAIL that the recipe did not cause: its worker was stopped (``work`` wrote the reason)."""
    reason = trial.user_attrs.get("fail_reason")
    return trial.state == TrialState.FAIL and isinstance(reason, str) and reason.startswith(INTERRUPTED)


# ------------------------------------------------------------------------------------------------ the study


@dataclass(frozen=True)
class TeacherRecord:
    """The fine-tuned fp32 teacher every student is compared with, measured once by ``run``."""

    path: str | None = None
    key: str | None = None
    base_model: str | None = None
    accuracy: float | None = None
    f1: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    hardware_key: str | None = None
    parameters: int | None = None
    size_bytes: int | None = None
    accuracy_interval: dict[str, Any] | None = None  # Interval.to_dict() on the validation rows

    def interval(self) -> Interval | None:
        return _from_dict(Interval, self.accuracy_interval)


@dataclass(frozen=True)
class DataRecord:
    source: str | None = None
    train_rows: int | None = None
    validation_rows: int | None = None
    test_rows: int | None = None
    majority_rate: float | None = None  # of the validation split
    max_length: int | None = None


@dataclass(frozen=True)
class ConstraintsRecord:
    """The bounds as configured; ``min_accuracy_resolved`` is the floor in words or as a number."""

    min_accuracy: float | None = None
    max_latency_ms: float | None = None
    min_accuracy_resolved: float | str | None = None


@dataclass(frozen=True)
class SharedFolder:
    """A cached folder's files in the artifact store (the teacher, the elastic student), for workers on other
    machines: its cache key, and file name -> artifact id."""

    key: str
    files: dict[str, str]


@dataclass(frozen=True)
class BindingRecord:
    """What a study's trials are scored against, recorded when it is created: resuming it with another data set,
    teacher or search space would mix incomparable trials in one front, so ``run`` refuses that."""

    data_fingerprint: str | None = None  # content hash of the train and validation splits
    teacher_key: str | None = None
    search_space: dict[str, Any] | None = None  # as configured, before hardware gating

    def differences(self, other: BindingRecord) -> list[str]:
        """The fields recorded in both that differ, in words ("data", "teacher", "search space")."""
        fields = (("data_fingerprint", "data"), ("teacher_key", "teacher"), ("search_space", "search space"))
        return [
            words
            for name, words in fields
            if getattr(self, name) is not None
            and getattr(other, name) is not None
            and _comparable(name, getattr(self, name)) != _comparable(name, getattr(other, name))
        ]


def _comparable(name: str, value: Any) -> Any:
    """A recorded search space with every knob it does not name at the table's default: a space stored before a
    knob existed (``max_tokens``, say) is the same space as today's with that knob fixed at its default."""
    if name != "search_space" or not isinstance(value, dict):
        return value
    return {**SearchSpace().to_dict(), **value}


@dataclass(frozen=True)
class StudyRecord:
    """The study's user attrs; each None where the study does not record it (not made by ``run``, say).

    ``config``, ``latency``, ``distillation``, the spaces and the probe stay the dicts their own modules read
    (``config_from_dict``, ``ProbeResult.from_dict``) and the export card copies."""

    teacher: TeacherRecord | None = None
    data: DataRecord | None = None
    constraints: ConstraintsRecord | None = None
    artifact_dir: str | None = None
    config_file: str | None = None
    config: dict[str, Any] | None = None
    search_space: dict[str, Any] | None = None
    searched_space: dict[str, Any] | None = None  # after hardware gating
    distillation: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None
    hardware: dict[str, Any] | None = None  # the machine that measured the teacher
    hardware_probe: dict[str, Any] | None = None
    teacher_artifacts: SharedFolder | None = None
    elastic_artifacts: SharedFolder | None = None  # trial_mode elastic: the elastic student
    augment_artifacts: SharedFolder | None = None  # data.augment: the teacher's labels of the augmented rows
    binding: BindingRecord | None = None  # None: a study made before 0.2, bound to nothing
    sampler_seeds: list[int] | None = None  # the sampler seed of each run and joining worker, in order
    teacher_predictions: list[int] | None = None  # the teacher's class per validation row: trials pair with it
    repeats_of: str | None = None  # a `latencysolver confirm` study: the search study whose trials it repeats
    retrains_of: str | None = None  # a `latencysolver retrain` study: the search study whose recipes it retrains
    # `latencysolver remeasure`: trial number (as a string) -> the trial's latency fields measured again; a
    # finished trial's own attrs cannot change, so readers apply these (``front.completed_trials``)
    remeasured: dict[str, dict[str, Any]] | None = None

    def fingerprint(self) -> HardwareFingerprint | None:
        return _fingerprint(self.hardware)

    @property
    def sibling_of(self) -> str | None:
        """A study of ``confirm`` or ``retrain``: the search study whose recipes it runs again (enqueued, never
        sampled, measured on test too); None for a search study."""
        return self.repeats_of or self.retrains_of


_TYPED = {
    "teacher": TeacherRecord,
    "data": DataRecord,
    "constraints": ConstraintsRecord,
    "teacher_artifacts": SharedFolder,
    "elastic_artifacts": SharedFolder,
    "augment_artifacts": SharedFolder,
    "binding": BindingRecord,
}


def _typed(cls: type, raw: Any, key: str) -> Any:
    if not isinstance(raw, dict):
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in raw.items() if k in names})  # keys of a later version are left out
    except TypeError as exc:
        raise StorageError(f"study user attr {key!r} = {raw!r}: {first_line(exc)}") from None


def present(record: Any) -> dict[str, Any]:
    """A record's recorded fields as a dict (absent ones left out, as in the stored attr); {} for None."""
    if record is None:
        return {}
    return {k: v for k, v in dataclasses.asdict(record).items() if v is not None}


def study_record(study: optuna.Study | Any) -> StudyRecord:
    """From a Study or a ``StudySummary`` (both have ``user_attrs``)."""
    a = study.user_attrs
    fields = {f.name: a.get(f.name) for f in dataclasses.fields(StudyRecord)}
    for key, cls in _TYPED.items():
        fields[key] = _typed(cls, fields[key], key)
    return StudyRecord(**fields)


def write_study_record(study: optuna.Study, record: StudyRecord) -> None:
    """Write each non-None field under its key (a partial record writes only what it holds)."""
    for f in dataclasses.fields(StudyRecord):
        value = getattr(record, f.name)
        if value is not None:
            typed = dataclasses.is_dataclass(value) and not isinstance(value, type)
            study.set_user_attr(f.name, dataclasses.asdict(value) if typed else value)
