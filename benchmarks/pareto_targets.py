"""benchmarks/pareto.py's targets, each said met or not with its figures, and the run's noise warning.

A helper of pareto.py only: no other benchmark imports it (shared code lives in the package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pareto_measure import Row
from scipy.stats import norm

from latencysolver.stats import Interval, PairedComparison, summarize

EPS = 1e-9


@dataclass(frozen=True)
class Goals:
    """What the speed and int8 targets ask: a front recipe ``speedup`` x faster than the fp32 teacher, its seed-mean
    test accuracy within ``test_points`` of the teacher's, non-inferior at ``margin`` (accuracy, 0.02 = 2 points;
    one-sided bound at ``confidence``) over the held-out rows (validation + test, seeds pooled; validation alone
    for a recipe without seed repeats); the whole run within ``wall_hours``."""

    speedup: float = 8.0
    margin: float = 0.02
    test_points: float = 2.0
    confidence: float = 0.95
    wall_hours: float = 3.0


@dataclass
class Target:
    name: str
    met: bool | None  # None: not measured
    detail: str


def _points(delta: float) -> str:
    return f"{delta * 100:+.1f} pts"


def _bound(paired: dict[str, Any] | None, goals: Goals) -> float | None:
    """The one-sided lower confidence bound of a paired difference (None when not measured)."""
    return PairedComparison.from_dict(paired).lower_bound(goals.confidence) if paired else None


def one_sided_bound(interval: dict[str, Any], confidence: float) -> float:
    """The one-sided lower bound at ``confidence`` of a normal-approximation interval (``Interval.to_dict()``,
    two-sided at its own confidence, e.g. ``stats.seed_pooled_difference``): its half-width rescaled by z."""
    i = Interval.from_dict(interval)
    z_then, z_now = norm.ppf(0.5 + i.confidence / 2), norm.ppf(confidence)
    return i.estimate - (i.estimate - i.low) * z_now / z_then


def held_out_bound(row: Row, goals: Goals) -> tuple[float | None, str]:
    """The bound the speed target judges non-inferiority on, and which rows it is over: the seed repeats pooled
    over validation + test when ``--confirm`` ran them, else the search trial's validation rows."""
    if row.repeats_heldout_vs_teacher:
        seeds = (row.repeats or {}).get("finished", "?")
        return one_sided_bound(row.repeats_heldout_vs_teacher, goals.confidence), f"held-out bound ({seeds} seeds)"
    return _bound(row.val_vs_teacher, goals), "validation bound (one seed)"


def seed_figure(row: Row, key: str, single: float | None) -> tuple[float | None, int]:
    """A recipe's seed-mean figure (``validation``, ``test``, ``speedup``) and how many seeds it is over: its
    repeats' when --confirm ran them, else the search trial's own value (one seed)."""
    summary = (row.repeats or {}).get(key)
    if summary:
        return summary["mean"], summary["n"]
    return single, 1


def speed_target(front: list[Row], teacher: Row, goals: Goals = Goals()) -> Target:
    margin = goals.margin * 100
    name = (
        f"a front recipe >= {goals.speedup:g}x faster than the fp32 teacher whose seed-mean test accuracy is within "
        f"{goals.test_points:g} points of the teacher's and whose seed-pooled paired difference over the held-out "
        f"rows (validation + test) is non-inferior at margin {margin:g} (one-sided {goals.confidence:.0%} bound above "
        f"-{margin:g} points)"
    )
    if not front:
        return Target(name, False, "the front is empty")
    verdicts = []
    for r in front:
        speed, _ = seed_figure(r, "speedup", r.speedup)
        test_mean, n = seed_figure(r, "test", r.test_accuracy)
        bound, bound_name = held_out_bound(r, goals)
        checks = {
            "fast": speed is not None and speed >= goals.speedup,
            "test": test_mean is not None
            and teacher.test_accuracy is not None
            and test_mean >= teacher.test_accuracy - goals.test_points / 100 - EPS,
            "held-out": bound is not None and bound > -goals.margin,
        }
        test_text = (
            "no test split"
            if test_mean is None or teacher.test_accuracy is None
            else (
                f"test {test_mean:.3f} ({n} seed{'s' if n > 1 else ''}; {_points(test_mean - teacher.test_accuracy)})"
            )
        )
        bound_text = "not measured" if bound is None else f"{bound * 100:+.1f} pts"
        verdicts.append(
            (
                sum(checks.values()),
                speed or 0.0,
                r,
                f"{r.name}: {speed:.1f}x, {test_text}, {bound_name} {bound_text}",
            )
        )
    qualifying = [v for v in verdicts if v[0] == 3]
    if qualifying:
        best = max(qualifying, key=lambda v: v[1])
        return Target(name, True, f"{best[3]}; {best[1] - goals.speedup:.1f}x above {goals.speedup:g}x")
    closest = max(verdicts, key=lambda v: (v[0], v[1]))
    unsure = "" if closest[2].repeats else " (one seed: pass --confirm N for the seed mean and the held-out rows)"
    return Target(name, False, f"no recipe passes all three; closest: {closest[3]}{unsure}")


def int8_target(front: list[Row], baseline: Row, goals: Goals = Goals()) -> Target:
    margin = goals.margin * 100
    name = (
        f"a front recipe faster than the {baseline.name} and non-inferior to it on validation (paired, one-sided "
        f"{goals.confidence:.0%} bound above -{margin:g} points)"
    )
    rows = [(r, _bound(r.val_vs_ort_int8, goals)) for r in front]
    faster = [(r, b) for r, b in rows if r.speedup > baseline.speedup]
    qualifying = [(r, b) for r, b in faster if b is not None and b > -goals.margin]
    if qualifying:
        r, b = max(qualifying, key=lambda rb: rb[0].speedup)
        return Target(
            name,
            True,
            f"{r.name}: {r.speedup:.2f}x vs {baseline.speedup:.2f}x, validation {r.val_accuracy:.3f} vs "
            f"{baseline.val_accuracy:.3f}, bound {b * 100:+.1f} pts",
        )
    if not faster:
        return Target(name, False, f"no front recipe is faster than its {baseline.speedup:.2f}x")
    r, b = max(faster, key=lambda rb: rb[1] if rb[1] is not None else -1.0)
    bound = "not measured" if b is None else f"{b * 100:+.1f} pts"
    return Target(
        name,
        False,
        f"of the faster recipes, {r.name} comes closest: validation {r.val_accuracy:.3f} vs "
        f"{baseline.val_accuracy:.3f}, bound {bound} (needs > -{margin:g})",
    )


def hypervolume_target(sampler: str, main: list[float], random: list[float]) -> Target:
    """The sampler against random search over sampler seeds: a lead smaller than the larger sd is no lead."""
    name = f"{sampler} beats random search on hypervolume, by more than the spread over sampler seeds"
    if not random:
        return Target(name, None, "no random-search study (--skip-random, or the study's sampler is random)")
    m, r = summarize(main), summarize(random)
    lead = m.mean - r.mean
    spread = max(m.sd, r.sd)
    figures = f"{m.describe(digits=4)} vs {r.describe(digits=4)} over {m.n} seed(s) each, lead {lead:+.4f}"
    if m.n < 2 or r.n < 2:
        return Target(name, None, f"{figures}: one seed has no spread, so no lead can be called (--sampler-seeds)")
    if lead > spread:
        return Target(name, True, f"{figures} > sd {spread:.4f}")
    return Target(name, False, f"{figures}: no lead (not above the sd {spread:.4f})")


def wall_target(seconds: float, budget: str, goals: Goals = Goals()) -> Target:
    left = goals.wall_hours * 3600 - seconds
    margin = f"{left / 60:.0f} min to spare" if left >= 0 else f"{-left / 60:.0f} min over"
    return Target(
        f"whole benchmark within {goals.wall_hours:g} hours",
        left >= 0,
        f"{seconds / 60:.1f} min ({margin}); budget: {budget}",
    )


def noise_warning(rows: list[Row], spread: float = 1.5) -> str | None:
    """The fp32 teacher's p50 should read about the same in every pair; when it does not, the machine was busy.

    Paired ratios cancel noise that slows both models alike, but not CPU contention that slows torch's OpenMP
    threads far more than onnxruntime's.
    """
    seen = {r.name: r.teacher_p50_ms for r in rows if r.teacher_p50_ms}
    if len(seen) < 2 or max(seen.values()) <= spread * min(seen.values()):
        return None
    low, high = min(seen, key=seen.get), max(seen, key=seen.get)
    return (
        f"warning: the fp32 teacher's paired p50 ranged {seen[low]:.1f} ms ({low}) to {seen[high]:.1f} ms "
        f"({high}): the machine's speed changed during the run (other jobs, or a shared host); compare "
        "speed-ups, not milliseconds, and expect them to move more than their ±CV between runs"
    )
