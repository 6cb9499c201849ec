"""Do two budgets rank recipes alike?  Spearman's rank correlation with a 95% interval.

A search trains each student cheaply and ``retrain`` trains the chosen ones again on a long schedule; searching
cheaply is worth it only where the cheap scores order recipes as the retrained ones do.  ``rank_agreement`` gives
Spearman's rho (``scipy.stats.spearmanr``: average ranks for ties) with the Fisher-z interval and Bonett and
Wright's (2000) standard error, ``sqrt((1 + rho**2 / 2) / (n - 3))``, which holds its coverage for Spearman's rho
on small samples where the Pearson one (``1 / sqrt(n - 3)``) is too narrow.  It needs at least 4 recipes, and
with 8 recipes the interval is still wide (rho 0.8 reads [0.09, 0.97]): say so rather than read much into
the point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats
from scipy.stats import norm

from latencysolver.stats.intervals import Interval

MIN_RECIPES = 4  # Fisher z's standard error needs n > 3
CONFIDENCE = 0.95
METHOD = "spearman-fisher-z-bonett-wright"
_Z = float(norm.ppf(0.5 + CONFIDENCE / 2))


@dataclass(frozen=True)
class RankAgreement:
    """Spearman's rho of ``n`` paired scores and its 95% interval (None where undefined: a constant side)."""

    n: int
    rho: float | None
    interval: Interval | None  # its estimate is rho

    def describe(self) -> str:
        """One line: rho and its interval over the recipes, or why it is undefined."""
        if self.rho is None or self.interval is None:
            return f"Spearman rho undefined over {self.n} recipes (one side ranks them all equal)"
        return (
            f"Spearman rho {self.rho:+.2f} [{self.interval.low:+.2f}, {self.interval.high:+.2f}] "
            f"over {self.n} recipes (95%, Fisher z)"
        )


def rank_agreement(first: Sequence[float], second: Sequence[float]) -> RankAgreement:
    """Spearman's rho between ``first[i]`` and ``second[i]`` (one recipe each) with its two-sided interval."""
    if len(first) != len(second):
        raise ValueError(f"rank_agreement: {len(first)} scores against {len(second)}")
    n = len(first)
    if n < MIN_RECIPES:
        raise ValueError(f"rank_agreement: needs at least {MIN_RECIPES} recipes, got {n}")
    if len(set(first)) == 1 or len(set(second)) == 1:
        return RankAgreement(n, None, None)
    rho = float(scipy_stats.spearmanr(first, second).statistic)
    if abs(rho) > 1.0 - 1e-9:  # every recipe in the same (or reversed) place: Fisher z is infinite
        rho = math.copysign(1.0, rho)
        return RankAgreement(n, rho, Interval(rho, rho, rho, CONFIDENCE, METHOD))
    se = math.sqrt((1.0 + rho * rho / 2.0) / (n - 3))
    centre = math.atanh(rho)
    low, high = math.tanh(centre - _Z * se), math.tanh(centre + _Z * se)
    return RankAgreement(n, rho, Interval(rho, low, high, CONFIDENCE, METHOD))
