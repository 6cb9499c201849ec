"""The trials that count, and the front they make: COMPLETE trials with their latest latency (a
``latencysolver remeasure`` applied), the feasible ones among them (constraints met, latency not flagged
unstable), and their Pareto front; plus the tables' text for intervals and paired differences."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from latencysolver.errors import StorageError
from latencysolver.results.attributes import with_measurements
from latencysolver.results.records import is_feasible, study_record, trial_record
from latencysolver.stats import Interval, PairedComparison

# ------------------------------------------------------------------------------------------------ results


def slowness(trial: FrozenTrial, minimize: bool) -> float:
    """Sort key, fastest first, whichever latency figure the study optimizes: ``minimize``, the p50 ms (values[1]
    ↓); else the speed-up (↑)."""
    return trial.values[1] if minimize else -trial.values[1]


# the latency fields ``latencysolver remeasure`` measures again (``StudyRecord.remeasured``)
REMEASURED_FIELDS = (
    "speedup",
    "speedup_cv",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_cv",
    "reference_p50_ms",
    "hardware",
    "hardware_key",
    "latency_stability",
)


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE trials, each with its latest latency: a trial that ``latencysolver remeasure`` timed again
    is returned as a copy carrying those figures (its speed-up or p50 objective, its latency user attrs and its
    latency constraints); the stored trial is left as it is."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    record = study_record(study)
    remeasured = record.remeasured or {}
    # a study ``run`` made without a ceiling stores its value as 0.0, which a slower re-measurement must not move
    has_ceiling = record.constraints is None or record.constraints.max_latency_ms is not None
    return [
        _with_remeasurement(t, study, remeasured[str(t.number)], has_ceiling) if str(t.number) in remeasured else t
        for t in trials
    ]


def _with_remeasurement(
    trial: FrozenTrial, study: optuna.Study, figures: dict[str, Any], has_ceiling: bool
) -> FrozenTrial:
    minimize = study.directions[1] == StudyDirection.MINIMIZE
    new = figures.get("latency_p50_ms" if minimize else "speedup")
    record = trial_record(trial)
    changes = {"min_speedup": -_change(record.speedup, figures.get("speedup"))}  # min speed-up - speed-up
    if has_ceiling:
        changes["max_latency_ms"] = _change(record.latency_p50_ms, figures.get("latency_p50_ms"))  # p50 - max ms
    return with_measurements(
        trial,
        {k: figures[k] for k in REMEASURED_FIELDS if k in figures},
        float(new) if isinstance(new, (int, float)) else None,
        changes,
    )


def _change(old: Any, new: Any) -> float:
    """How much ``latencysolver remeasure`` moved one figure (0.0 when either figure is missing)."""
    return float(new) - float(old) if isinstance(old, (int, float)) and isinstance(new, (int, float)) else 0.0


def feasible_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials (with their latest latency) whose constraints are met and whose latency is not flagged
    unstable: a figure taken under load ranks nothing until ``latencysolver remeasure`` has timed it again."""
    return [t for t in completed_trials(study) if is_feasible(t) and not trial_record(t).latency_unstable]


def unstable_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials whose latest latency measurement is flagged unstable."""
    return [t for t in completed_trials(study) if trial_record(t).latency_unstable]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The front of the *feasible* trials (constraints met), most accurate first: the one front every command,
    report and benchmark shows.

    Equal to Optuna's ``study.best_trials`` for every study ``run`` writes (its constraints go through
    ``set_constraint``); computed here so that feasibility is ``is_feasible``'s, which also reads the legacy
    user-attr list that ``best_trials`` ignores, and so that equal points are all kept, in a fixed order."""
    minimize = study.directions[1] == StudyDirection.MINIMIZE
    candidates = feasible_trials(study)
    key = [(-t.values[0], slowness(t, minimize)) for t in candidates]  # both minimized

    def dominated(i: int) -> bool:
        return any(a[0] <= key[i][0] and a[1] <= key[i][1] and a != key[i] for a in key)

    front = [t for i, t in enumerate(candidates) if not dominated(i)]
    return sorted(front, key=lambda t: (-t.values[0], slowness(t, minimize), t.number))


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` above ``reference``, both objectives maximized (2-D).

    Sorted by the first objective, most first: between the i-th and the next x, the dominated height is the
    best second objective among the first i points.
    """
    rx, ry = reference
    inside = sorted(((x, y) for x, y in points if x > rx and y > ry), reverse=True)
    area, best_y = 0.0, ry
    for i, (x, y) in enumerate(inside):
        best_y = max(best_y, y)
        next_x = inside[i + 1][0] if i + 1 < len(inside) else rx
        area += (x - next_x) * (best_y - ry)
    return area


def study_hypervolume(study: optuna.Study, reference: tuple[float, float]) -> float:
    """The hypervolume of the feasible trials' (accuracy, speed-up) above ``reference``: a study whose second
    objective is maximized (``latency.objective: speedup``)."""
    if study.directions[1] != StudyDirection.MAXIMIZE:
        raise ValueError("a hypervolume needs both objectives maximized: this study minimizes latency_ms")
    return hypervolume([(t.values[0], t.values[1]) for t in feasible_trials(study)], reference)


def hardware_warning(study: optuna.Study) -> str | None:
    """A warning when the front's latencies were measured on different hardware (or threads, or versions)."""
    keys: dict[str, list[int]] = {}
    for t in pareto_trials(study):
        keys.setdefault(trial_record(t).hardware_key or "unknown", []).append(t.number)
    if len(keys) < 2:
        return None
    groups = "; ".join(f"{key}: trials {numbers}" for key, numbers in sorted(keys.items()))
    advice = (
        "compare speed-ups, not milliseconds"
        if study.directions[1] == StudyDirection.MAXIMIZE
        else "their milliseconds are not comparable; set latency.objective: speedup"
    )
    return (
        f"warning: study {study.study_name!r}: the Pareto front mixes latencies measured on "
        f"{len(keys)} different hardware fingerprints ({groups}); {advice}"
    )


def get_trial(study: optuna.Study, number: int, flag: str = "--trial") -> FrozenTrial:
    """Trial ``number`` of ``study``, COMPLETE, with its latest latency; else a StorageError naming ``flag``."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise StorageError(f"{flag}: study {study.study_name!r} has no trial {number} (trials 0..{len(trials) - 1})")
    trial = trials[number]
    if trial.state != TrialState.COMPLETE:
        raise StorageError(f"{flag}: trial {number} of {study.study_name!r} is {trial.state.name}, not COMPLETE")
    return next(t for t in completed_trials(study) if t.number == number)  # with its latest latency


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    rows = []
    for t in pareto_trials(study):
        r = trial_record(t)
        rows.append(
            {
                "trial": t.number,
                "accuracy": t.values[0],
                "accuracy_interval": interval_text(r.interval()),
                "vs_teacher": difference_text(r.paired()),
                "f1": r.f1,
                "latency_ms": r.latency_p50_ms,
                "speedup": r.speedup,
                "speedup_cv": r.speedup_cv,
                "hardware_key": r.hardware_key,
                "layers": r.layers,
                "parameters": r.parameters,
                "size_mb": (r.size_bytes or 0) / 1e6,
                "recipe": r.recipe.describe() if r.recipe else f"(unreadable recipe: {r.recipe_error})",
            }
        )
    return rows


def interval_text(interval: Interval | None) -> str:
    """``[0.654, 0.735]``; ``n/a`` when not recorded (a study made before 0.2)."""
    return interval.describe(estimate=False) if interval is not None else "n/a"


def difference_text(paired: PairedComparison | None) -> str:
    """The paired difference to the teacher with its 95% interval, in points: ``-2.0 [-5.7, +1.7]``."""
    if paired is None:
        return "n/a"
    i = paired.difference_interval
    return f"{100 * paired.difference:+.1f} [{100 * i.low:+.1f}, {100 * i.high:+.1f}]"
