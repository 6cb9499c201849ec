"""Which trial to ship: selection rules over a finished study's feasible trials.

Every rule looks only at COMPLETE trials whose constraints are met (``study.feasible_trials``); an infeasible
trial is never chosen.  The four ``--best`` rules pick from the Pareto front of those trials
(``study.pareto_trials``); ``--max-latency-ms`` picks from all of them.  "Faster" follows the study's second
objective: a larger speed-up (``latency.objective: speedup``, maximized) or fewer milliseconds
(``latency_ms``, minimized).  Ties are broken the same way everywhere: more accurate, then faster, then the
lower trial number, so a rule always returns one trial and the same one every time.

    near-teacher   the fastest front trial within ``tolerance`` accuracy of the teacher's validation
                   accuracy; if none is that close, the most accurate front trial (the default of ``--best``)
    max-accuracy   the most accurate front trial (ties: the faster)
    min-latency    the fastest front trial (ties: the more accurate)
    knee           the front trial closest (Euclidean) to the ideal point after scaling each objective to
                   [0, 1] over the front: accuracy a → (a - min a) / (max a - min a), the latency objective the
                   same way with 1 = fastest (for ``latency_ms``: (max - ms) / (max - min)); the ideal point is
                   (1, 1), the most accurate and the fastest at once.  An objective that does not vary over the
                   front scales to 1 for every trial.  On a two-trial front both ends are at distance 1: the
                   tie goes to the more accurate one.
    max-latency-ms X   the most accurate feasible trial whose measured p50 (``latency_p50_ms``) is <= X ms
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from latencysolver.errors import SelectionError
from latencysolver.results.front import feasible_trials, pareto_trials
from latencysolver.results.records import study_record, trial_record

RULES: tuple[str, ...] = ("near-teacher", "max-accuracy", "min-latency", "knee")
DEFAULT_RULE = "near-teacher"
RULE_HELP = {
    "near-teacher": "fastest front trial within --tolerance accuracy of the teacher, else the most accurate",
    "max-accuracy": "most accurate front trial (ties: the faster)",
    "min-latency": "fastest front trial (ties: the more accurate)",
    "knee": "front trial closest to the ideal point, accuracy and latency objective each scaled to [0, 1] "
    "over the front",
}


@dataclass(frozen=True)
class Selection:
    trial: FrozenTrial
    rule: str  # "near-teacher", "max-accuracy", "min-latency", "knee", "max-latency-ms", or "trial"
    reason: str  # one human-readable clause: why this trial


# ------------------------------------------------------------------------------------------------ pure rules
# ``minimize`` says how the second objective (values[1]) reads: True for latency_ms, False for speed-up.


def _slowness(trial: FrozenTrial, minimize: bool) -> float:
    return trial.values[1] if minimize else -trial.values[1]


def _rank_key(minimize: bool) -> Callable[[FrozenTrial], tuple[float, float, int]]:
    """More accurate first, then faster, then the lower trial number: the tie-break of every rule."""
    return lambda t: (-t.values[0], _slowness(t, minimize), t.number)


def max_accuracy(front: Sequence[FrozenTrial], minimize: bool) -> FrozenTrial:
    return min(front, key=_rank_key(minimize))


def min_latency(front: Sequence[FrozenTrial], minimize: bool) -> FrozenTrial:
    return min(front, key=lambda t: (_slowness(t, minimize), -t.values[0], t.number))


def near_teacher(
    front: Sequence[FrozenTrial], minimize: bool, teacher_accuracy: float | None, tolerance: float
) -> FrozenTrial:
    if teacher_accuracy is not None:
        close = [t for t in front if t.values[0] >= teacher_accuracy - tolerance]
        if close:
            return min_latency(close, minimize)
    return max_accuracy(front, minimize)


def knee_distances(front: Sequence[FrozenTrial], minimize: bool) -> dict[int, float]:
    """Trial number → distance to the ideal point (1, 1) after scaling both objectives to [0, 1] over ``front``."""

    def scaled(values: list[float], higher_is_better: bool) -> list[float]:
        lo, hi = min(values), max(values)
        if hi - lo <= 0:
            return [1.0] * len(values)
        return [(v - lo) / (hi - lo) if higher_is_better else (hi - v) / (hi - lo) for v in values]

    accuracy = scaled([t.values[0] for t in front], True)
    speed = scaled([t.values[1] for t in front], not minimize)
    return {t.number: math.hypot(1.0 - a, 1.0 - s) for t, a, s in zip(front, accuracy, speed, strict=True)}


def knee(front: Sequence[FrozenTrial], minimize: bool) -> FrozenTrial:
    distance = knee_distances(front, minimize)
    rank = _rank_key(minimize)
    # distances are rounded so that float noise does not beat the documented tie-break
    return min(front, key=lambda t: (round(distance[t.number], 12), *rank(t)))


def under_latency(feasible: Sequence[FrozenTrial], minimize: bool, max_latency_ms: float) -> FrozenTrial | None:
    fits = [t for t in feasible if (p50 := _p50(t)) is not None and p50 <= max_latency_ms]
    return min(fits, key=_rank_key(minimize)) if fits else None


def _p50(trial: FrozenTrial) -> float | None:
    value = trial_record(trial).latency_p50_ms
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


# ------------------------------------------------------------------------------------------------ on a study


def minimizes_latency(study: optuna.Study) -> bool:
    return study.directions[1] == StudyDirection.MINIMIZE


def _front(study: optuna.Study) -> list[FrozenTrial]:
    front = pareto_trials(study)
    if not front:
        raise SelectionError(f"study {study.study_name!r} has no completed feasible trials yet")
    return front


def select_best(study: optuna.Study, rule: str = DEFAULT_RULE, tolerance: float = 0.01) -> Selection:
    """One of ``RULES`` applied to the feasible Pareto front of ``study``."""
    if rule not in RULES:
        raise ValueError(f"--best: rule must be one of {', '.join(RULES)}, but got {rule!r}")
    front, minimize = _front(study), minimizes_latency(study)
    if rule == "near-teacher":
        recorded = study_record(study).teacher
        teacher = recorded.accuracy if recorded else None
        trial = near_teacher(front, minimize, teacher, tolerance)
        if teacher is not None and trial.values[0] >= teacher - tolerance:
            why = (
                f"the fastest of {len(front)} front trials within {tolerance:g} accuracy of the teacher's {teacher:.3f}"
            )
        else:
            why = (
                f"no front trial within {tolerance:g} accuracy of the teacher"
                + (f"'s {teacher:.3f}" if teacher is not None else " (no teacher accuracy recorded)")
                + f", so the most accurate of {len(front)}"
            )
        return Selection(trial, rule, why)
    if rule == "max-accuracy":
        return Selection(max_accuracy(front, minimize), rule, f"the most accurate of {len(front)} front trials")
    if rule == "min-latency":
        return Selection(min_latency(front, minimize), rule, f"the fastest of {len(front)} front trials")
    trial = knee(front, minimize)
    distance = knee_distances(front, minimize)[trial.number]
    return Selection(
        trial,
        rule,
        f"the knee of {len(front)} front trials (distance {distance:.3f} to the "
        "ideal point, both objectives scaled to [0, 1])",
    )


def select_under_latency(study: optuna.Study, max_latency_ms: float) -> Selection:
    """The most accurate feasible COMPLETE trial with ``latency_p50_ms <= max_latency_ms``."""
    feasible = feasible_trials(study)
    if not feasible:
        raise SelectionError(f"study {study.study_name!r} has no completed feasible trials yet")
    minimize = minimizes_latency(study)
    trial = under_latency(feasible, minimize, max_latency_ms)
    if trial is None:
        timed = [t for t in feasible if _p50(t) is not None]
        if not timed:
            raise SelectionError(
                f"--max-latency-ms {max_latency_ms:g}: no feasible trial of {study.study_name!r} records a latency p50"
            )
        fastest = min(timed, key=lambda t: (_p50(t), t.number))
        raise SelectionError(
            f"--max-latency-ms {max_latency_ms:g}: no feasible trial of {study.study_name!r} has "
            f"latency p50 <= {max_latency_ms:g} ms; the fastest feasible p50 is "
            f"{_p50(fastest):.2f} ms (trial {fastest.number})"
        )
    fits = len([t for t in feasible if (p50 := _p50(t)) is not None and p50 <= max_latency_ms])
    return Selection(
        trial,
        "max-latency-ms",
        f"the most accurate of {fits} feasible trials with latency p50 <= {max_latency_ms:g} ms",
    )


def pick_best(study: optuna.Study, tolerance: float = 0.01) -> FrozenTrial:
    """The fastest front trial within ``tolerance`` accuracy of the teacher; else the most accurate one.

    The ``near-teacher`` rule of ``latencysolver.selection`` (where the other rules live too)."""
    return select_best(study, "near-teacher", tolerance).trial
