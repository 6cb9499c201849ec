"""Which non-inferiority margins a validation split of ``n`` rows can resolve.

The paired difference of two accuracies on ``n`` rows (``paired.py``) is ``(b - c) / n`` with ``b`` and ``c``
the discordant counts (rows only the student gets right, rows only the teacher gets right).  With ``q = (b + c)
/ n`` the discordant share and ``θ = (b - c) / n`` the difference, its variance is ``(q - θ²) / n``; near
``θ = 0``, where a non-inferiority decision is made, the standard error is::

    SE ≈ sqrt(q / n)

A one-sided test at confidence ``c`` can tell a student at the teacher's accuracy apart from one a margin ``m``
below only when ``m`` is above about ``z_c · SE`` (``z_c = Φ⁻¹(c)``, the one-sided normal quantile; 1.645 at
95%).  A margin smaller than that is a margin no student of equal accuracy passes reliably.

Worked: a student that disagrees with the teacher on 18% of 500 rows (90 discordant rows)::

    SE     = sqrt(0.18 / 500)   = sqrt(0.00036) = 0.0190   (1.9 points)
    margin = 1.645 · 0.0190     = 0.0312                   (3.1 points, at one-sided 95%)

A student that agrees more (discordant share 0.08) resolves sqrt(0.08 / 500) · 1.645 = 0.021; four times the
rows halve both figures.  These are approximations for planning; the decision itself uses
the Newcombe interval.
"""

from __future__ import annotations

import math

from scipy.stats import norm

from latencysolver.stats.intervals import check_confidence


def standard_error_of_difference(discordant_share: float, n: int) -> float:
    """Approximate standard error of a paired accuracy difference near 0: ``sqrt(discordant_share / n)``.

    ``discordant_share`` is the share of the ``n`` rows on which exactly one of the two models is right."""
    if not 0.0 <= discordant_share <= 1.0:
        raise ValueError(f"discordant_share must be between 0 and 1, got {discordant_share!r}")
    if n <= 0:
        raise ValueError(f"n must be a positive number of rows, got {n!r}")
    return math.sqrt(discordant_share / n)


def resolvable_margin(discordant_share: float, n: int, confidence: float = 0.95) -> float:
    """The smallest non-inferiority margin about resolvable: ``z · SE`` with ``z = norm.ppf(confidence)``
    (one-sided) and ``SE = standard_error_of_difference(discordant_share, n)``.  In accuracy units."""
    z = float(norm.ppf(check_confidence(confidence)))
    return z * standard_error_of_difference(discordant_share, n)
