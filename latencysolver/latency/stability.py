"""Is a paired latency measurement trustworthy?  Checked, repeated while it is not, and flagged if it stays so.

The paired speed-up cancels slow, common noise (another job slowing both models alike), but not CPU
oversubscription: with more runnable threads than cores, a long call is preempted more often than a short one,
so the teacher's calls stretch more than a small student's and the ratio is biased upwards, several times over
under heavy load (benchmarks/README.md).  Two signs give such a measurement away, and both are cheap to read off the
measurement itself:

    spread   the pair-ratio CV (``PairedLatency.speedup_cv``, over the per-pass median ratios) above
             ``max_speedup_cv``;
    drift    the teacher's p50 inside this measurement against the study's baseline teacher p50 on the same
             hardware, ``reference p50 / baseline - 1``, above ``max_reference_drift`` (one-sided: load only
             ever slows the teacher down).

A measurement showing either is taken again after ``remeasure_wait_s`` seconds (doubling each time), at most
``remeasure_attempts`` more times.  The first clean attempt is kept; when none is clean, the attempt whose teacher
ran fastest (the least loaded one) is kept and reported unstable: the trial keeps its figures with the flag, sits
off the front and out of ``--best`` until ``latencysolver remeasure`` times its stored model again.

The default bounds sit between what quiet and loaded rounds of ``benchmarks/latency_stability.py`` read (its
section of benchmarks/README.md has the figures).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from latencysolver.config.study import LatencyConfig

if TYPE_CHECKING:  # the protocol imports torch; a stored StabilityCheck is read without it (pareto, report)
    from latencysolver.latency.protocol import Inputs, PairedLatency, Runnable


@dataclass(frozen=True)
class StabilityCheck:
    """What the checks found for the measurement that was kept; stored as the trial's ``latency_stability``."""

    stable: bool
    attempts: int  # measurements taken, the kept one included
    speedup_cv: float
    reference_drift: float | None  # None: no baseline on this hardware
    reasons: tuple[str, ...]  # empty when stable; otherwise one clause per failed check of the kept attempt
    max_speedup_cv: float | None
    max_reference_drift: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StabilityCheck:
        return cls(**{**raw, "reasons": tuple(raw.get("reasons", ()))})

    def describe(self) -> str:
        """``stable`` or ``unstable after 3 measurements: pair-ratio CV 23.1% > 10.0%; ...``"""
        if self.stable:
            return "stable" if self.attempts == 1 else f"stable at measurement {self.attempts}"
        return f"unstable after {self.attempts} measurements: " + "; ".join(self.reasons)


def measure_paired(*args: Any, **kwargs: Any) -> PairedLatency:
    """``protocol.measure_paired``, imported on the first call: the protocol imports torch, and reading a stored
    ``StabilityCheck`` (pareto, report) needs neither."""
    from latencysolver.latency.protocol import measure_paired as measure

    return measure(*args, **kwargs)


def drift(paired: PairedLatency, baseline_ms: float | None) -> float | None:
    """The teacher's p50 in this measurement over the baseline, minus one; None without a baseline."""
    if not baseline_ms or baseline_ms <= 0:
        return None
    return paired.reference.p50_ms / baseline_ms - 1.0


def problems(paired: PairedLatency, baseline_ms: float | None, config: LatencyConfig) -> tuple[str, ...]:
    """One clause per bound the measurement passes; empty when it passes none (or the bounds are off)."""
    found = []
    if config.max_speedup_cv is not None and paired.speedup_cv > config.max_speedup_cv:
        found.append(f"pair-ratio CV {paired.speedup_cv:.1%} > {config.max_speedup_cv:.1%}")
    shift = drift(paired, baseline_ms)
    if config.max_reference_drift is not None and shift is not None and shift > config.max_reference_drift:
        found.append(
            f"teacher p50 {paired.reference.p50_ms:.2f} ms is {shift:+.0%} from the baseline {baseline_ms:.2f} ms "
            f"(bound +{config.max_reference_drift:.0%})"
        )
    return tuple(found)


def measure_checked(
    model: Runnable,
    reference: Runnable,
    inputs: list[Inputs],
    config: LatencyConfig,
    baseline_ms: float | None,
    *,
    reference_inputs: list[Inputs] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[PairedLatency, StabilityCheck]:
    """``measure_paired``, repeated while it passes a bound (see the module docstring); returns the kept
    measurement and what the checks found."""
    attempts: list[tuple[PairedLatency, tuple[str, ...]]] = []
    wait = config.remeasure_wait_s
    for n in range(1 + config.remeasure_attempts):
        if n:
            sleep(wait)
            wait *= 2
        paired = measure_paired(model, reference, inputs, config, reference_inputs)
        found = problems(paired, baseline_ms, config)
        attempts.append((paired, found))
        if not found:
            break
    kept, found = attempts[-1] if not attempts[-1][1] else min(attempts, key=lambda a: a[0].reference.p50_ms)
    return kept, StabilityCheck(
        stable=not found,
        attempts=len(attempts),
        speedup_cv=kept.speedup_cv,
        reference_drift=drift(kept, baseline_ms),
        reasons=found,
        max_speedup_cv=config.max_speedup_cv,
        max_reference_drift=config.max_reference_drift,
    )
