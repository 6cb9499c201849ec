"""Seed repeats of one configuration (``confirm``): the spread a different seed gives, as mean ± sd.

The sd is the sample standard deviation (``ddof=1``, the n - 1 denominator): the spread one expects between
two runs of the same configuration with different seeds.  It is not the standard error of the mean (sd /
sqrt(n)), and with three seeds it is itself rough (its own relative SE is about 1 / sqrt(2(n - 1)) = 50%).
With one value there is no spread to estimate, and sd is reported as 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from latencysolver.stats.intervals import Interval, as_correct, check_confidence


@dataclass(frozen=True)
class SeedSummary:
    """``n`` values (one per seed): their mean, sample sd (0.0 when n == 1), smallest and largest."""

    n: int
    mean: float
    sd: float
    min: float
    max: float

    def describe(self, *, scale: float = 1.0, digits: int = 3, suffix: str = "", n: bool = False) -> str:
        """``"0.684 ± 0.012"``: mean ± sample sd (each times ``scale``), ``digits`` decimals; ``n``: ``(n=3)``."""
        text = f"{self.mean * scale:.{digits}f}{suffix} ± {self.sd * scale:.{digits}f}{suffix}"
        return f"{text} (n={self.n})" if n else text

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers: JSON as it is."""
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeedSummary:
        """The summary ``to_dict`` wrote."""
        return cls(
            n=int(data["n"]),
            mean=float(data["mean"]),
            sd=float(data["sd"]),
            min=float(data["min"]),
            max=float(data["max"]),
        )


def summarize(values: Sequence[float]) -> SeedSummary:
    """Mean, sample sd (``ddof=1``; 0.0 for a single value), min and max of ``values``; refuses an empty list
    and values that are not finite."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"summarize needs a non-empty, one-dimensional list of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("summarize: every value must be a finite number (no nan or inf)")
    sd = float(np.std(array, ddof=1)) if array.size > 1 else 0.0
    return SeedSummary(
        n=int(array.size),
        mean=float(np.mean(array)),
        sd=sd,
        min=float(array.min()),
        max=float(array.max()),
    )


SEED_POOLED = "seed-pooled-paired-normal"


def seed_pooled_difference(
    student_correct: Sequence[ArrayLike], teacher_correct: ArrayLike, confidence: float = 0.95
) -> Interval:
    """A recipe run with several seeds against the teacher on the same rows: its seed-mean paired difference
    with an interval for the rows' sampling.

    Per row ``i``: ``d_i`` = the share of the seeds that got row ``i`` right minus whether the teacher did
    (``d_i`` in [-1, 1]).  The estimate is the mean of ``d_i`` (equal to the mean over seeds of each seed's own
    accuracy difference); the interval is ``mean ± z·sd(d)/sqrt(n)`` (normal approximation over the ``n`` rows,
    sample sd).  It answers "how far is this recipe, averaged over seeds, from the teacher on rows like these",
    which neither a single seed's Newcombe interval (one seed's luck) nor the sd over three seeds (no row
    sampling) does.  With one seed it is the Wald interval of the paired difference."""
    check_confidence(confidence)
    seeds = [as_correct(c, "student_correct") for c in student_correct]
    teacher = as_correct(teacher_correct, "teacher_correct")
    if not seeds or any(len(s) != len(teacher) for s in seeds) or len(teacher) < 2:
        raise ValueError("seed_pooled_difference: one or more seeds, each with the teacher's rows (n >= 2)")
    d = np.mean(np.stack(seeds).astype(float), axis=0) - teacher.astype(float)
    mean = float(d.mean())
    half = float(norm.ppf(0.5 + confidence / 2) * d.std(ddof=1) / np.sqrt(len(d)))
    return Interval(estimate=mean, low=mean - half, high=mean + half, confidence=confidence, method=SEED_POOLED)
