"""Which trial to ship: selection rules over a finished study's feasible trials.

Every rule looks only at COMPLETE trials whose constraints are met and whose latency is not flagged unstable
(``front.feasible_trials``, with ``latencysolver remeasure``'s figures applied); an infeasible or unstable trial is
never chosen.  The four ``--best`` rules pick from the Pareto front of those trials
(``front.pareto_trials``); ``--max-latency-ms`` picks from all of them.  "Faster" follows the study's second
objective: a larger speed-up (``latency.objective: speedup``, maximized) or fewer milliseconds
(``latency_ms``, minimized).  Ties are broken the same way everywhere: more accurate, then faster, then the
lower trial number, so a rule always returns one trial and the same one every time.

    non-inferior   (the default of ``--best``) the fastest feasible trial that is non-inferior to the teacher:
                   the one-sided lower confidence bound (``confidence``, default 95%) of its paired difference
                   in validation accuracy to the teacher (Newcombe's interval, same rows) is above ``-margin``
                   (default 0.04: on 500 rows with 18% of them discordant, a student exactly as accurate as
                   the teacher has a bound of about -0.031, see ``latencysolver.stats.margins``).  Looks at
                   every feasible trial, not only the front: a trial off the front by a noisy point estimate
                   may be the fastest one the data can vouch for.  None qualifies: a ``SelectionError`` naming
                   the trial with the highest bound
    near-teacher   the fastest front trial within ``tolerance`` accuracy of the teacher's validation
                   accuracy; if none is that close, the most accurate front trial (a distance 500 rows cannot
                   resolve: kept for studies made before 0.2, which record no paired statistics)
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
from latencysolver.results.front import feasible_trials, pareto_trials, slowness, unstable_trials
from latencysolver.results.records import is_feasible, study_record, trial_record

RULES: tuple[str, ...] = ("non-inferior", "max-accuracy", "min-latency", "knee", "near-teacher")
DEFAULT_RULE = "non-inferior"
DEFAULT_MARGIN = 0.04
DEFAULT_CONFIDENCE = 0.95
DEFAULT_TOLERANCE = 0.01
RULE_HELP = {
    "non-inferior": "fastest feasible trial whose one-sided lower confidence bound of the paired accuracy "
    "difference to the teacher is above -margin",
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


def _rank_key(minimize: bool) -> Callable[[FrozenTrial], tuple[float, float, int]]:
    """More accurate first, then faster, then the lower trial number: the tie-break of every rule."""
    return lambda t: (-t.values[0], slowness(t, minimize), t.number)


def max_accuracy(front: Sequence[FrozenTrial], minimize: bool) -> FrozenTrial:
    return min(front, key=_rank_key(minimize))


def min_latency(front: Sequence[FrozenTrial], minimize: bool) -> FrozenTrial:
    return min(front, key=lambda t: (slowness(t, minimize), -t.values[0], t.number))


def near_teacher(
    front: Sequence[FrozenTrial], minimize: bool, teacher_accuracy: float | None, tolerance: float
) -> FrozenTrial:
    if teacher_accuracy is not None:
        close = [t for t in front if t.values[0] >= teacher_accuracy - tolerance]
        if close:
            return min_latency(close, minimize)
    return max_accuracy(front, minimize)


def non_inferior(
    feasible: Sequence[FrozenTrial], minimize: bool, margin: float, confidence: float
) -> FrozenTrial | None:
    qualified = [t for t in feasible if (p := trial_record(t).paired()) and p.is_noninferior(margin, confidence)]
    return min_latency(qualified, minimize) if qualified else None


def _select_non_inferior(study: optuna.Study, margin: float, confidence: float) -> Selection:
    feasible, minimize = feasible_trials(study), minimizes_latency(study)
    if not feasible:
        raise SelectionError(nothing_to_select(study))
    bounds = {t.number: p.lower_bound(confidence) for t in feasible if (p := trial_record(t).paired())}
    if not bounds:
        raise SelectionError(
            f"--best non-inferior: no trial of {study.study_name!r} records its paired difference to the teacher "
            "(a study made before 0.2); use --best knee or --best near-teacher"
        )
    rule = f"one-sided {confidence:.0%} lower bound of the paired difference to the teacher > -{margin:g}"
    trial = non_inferior(feasible, minimize, margin, confidence)
    if trial is None:
        closest = max(bounds, key=lambda n: (bounds[n], -n))
        raise SelectionError(
            f"--best non-inferior: no feasible trial of {study.study_name!r} has a {rule}; the closest is trial "
            f"{closest} with {bounds[closest]:+.4f} (widen --margin, or pass --fallback RULE)"
        )
    qualified = sum(bounds.get(t.number, -math.inf) > -margin for t in feasible)
    return Selection(
        trial,
        "non-inferior",
        f"the fastest of {qualified} feasible trials with a {rule} (this one: {bounds[trial.number]:+.4f})",
    )


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


def nothing_to_select(study: optuna.Study) -> str:
    """The one line for a study with no trial any rule may pick; it names the trials held back as unstable."""
    held = [t.number for t in unstable_trials(study) if is_feasible(t)]
    if not held:
        return f"study {study.study_name!r} has no completed feasible trials yet"
    return (
        f"study {study.study_name!r} has no completed feasible trial with a stable latency: trials {held} were "
        f"measured unstable (a loaded machine?); run `latencysolver remeasure --study {study.study_name}` on a "
        "quieter machine"
    )


def minimizes_latency(study: optuna.Study) -> bool:
    return study.directions[1] == StudyDirection.MINIMIZE


def _front(study: optuna.Study) -> list[FrozenTrial]:
    front = pareto_trials(study)
    if not front:
        raise SelectionError(nothing_to_select(study))
    return front


def select_best(
    study: optuna.Study,
    rule: str = DEFAULT_RULE,
    tolerance: float = DEFAULT_TOLERANCE,
    margin: float = DEFAULT_MARGIN,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Selection:
    """One of ``RULES``: ``non-inferior`` over the feasible trials, the others over the feasible Pareto front."""
    if rule not in RULES:
        raise ValueError(f"--best: rule must be one of {', '.join(RULES)}, but got {rule!r}")
    if rule == "non-inferior":
        return _select_non_inferior(study, margin, confidence)
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
        raise SelectionError(nothing_to_select(study))
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
