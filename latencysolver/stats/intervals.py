"""Confidence intervals for one model's accuracy on a fixed validation split.

An accuracy measured on ``n`` rows is ``k / n`` for ``k`` rows right: a binomial proportion.  Its uncertainty
is what another draw of ``n`` rows from the same distribution would have given, not the noise of the model.
On 500 rows one row is 0.2 points, and the standard error of an accuracy near 0.70 is
``sqrt(0.7 * 0.3 / 500) = 0.0205``: about 2 points, so a 95% interval is about ±4 points wide.

The interval is Wilson's score interval (Wilson EB, "Probable inference, the law of succession, and statistical
inference", JASA 22:209-212, 1927), the one Newcombe recommends among seven (Newcombe RG, "Two-sided confidence
intervals for the single proportion: comparison of seven methods", Statistics in Medicine 17:857-872, 1998,
method 3).  With ``p = k/n`` and ``z`` the two-sided normal quantile::

    (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)

Unlike the Wald interval ``p ± z·sqrt(p(1-p)/n)`` it never leaves [0, 1] and does not collapse to a point at
k = 0 or k = n: for all rows wrong it is [0, high] with high > 0, for all rows right [low, 1] with low < 1.
It is computed by ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` (no continuity correction;
scipy sets the bound at the edge to exactly 0 or 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

WILSON = "wilson"


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval ``[low, high]`` at ``confidence`` (e.g. 0.95).

    ``method`` names how the interval was computed (``"wilson"``, ``"newcombe-paired-10"``), so a stored
    interval says what it is.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    def __post_init__(self) -> None:
        check_confidence(self.confidence)
        if not self.low <= self.estimate <= self.high:
            raise ValueError(f"interval [{self.low}, {self.high}] does not contain its estimate {self.estimate}")

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds, ends included."""
        return self.low <= value <= self.high

    def describe(self, estimate: bool = True) -> str:
        """``"0.696 [0.654, 0.735]"``: the estimate and the bounds, 3 decimals (``estimate=False``: the bounds)."""
        bounds = f"[{self.low:.3f}, {self.high:.3f}]"
        return f"{self.estimate:.3f} {bounds}" if estimate else bounds

    def to_dict(self) -> dict[str, Any]:
        """Plain floats and a string: JSON as it is."""
        return {
            "estimate": float(self.estimate),
            "low": float(self.low),
            "high": float(self.high),
            "confidence": float(self.confidence),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Interval:
        """The interval ``to_dict`` wrote."""
        return cls(
            estimate=float(data["estimate"]),
            low=float(data["low"]),
            high=float(data["high"]),
            confidence=float(data["confidence"]),
            method=str(data["method"]),
        )


def check_confidence(confidence: float) -> float:
    """``confidence`` as a float strictly between 0 and 1, or a ValueError."""
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    return float(confidence)


def as_correct(rows: ArrayLike, name: str = "correct") -> np.ndarray:
    """``rows`` (one entry per validation row: bools, or 0/1) as a 1-D bool array, or a ValueError."""
    array = np.asarray(rows)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one entry per row), got shape {array.shape}")
    if array.dtype != np.bool_:
        if array.size and not (np.issubdtype(array.dtype, np.number) and np.isin(array, (0, 1)).all()):
            raise ValueError(f"{name} must hold bools or 0/1 per row")
        array = array.astype(bool)
    return array


def correct_of(predictions: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Per-row correctness, ``predictions == labels``, as a 1-D bool array (for ``accuracy_interval`` and
    ``paired_difference``).  Both must be 1-D and of the same length."""
    predicted, truth = np.asarray(predictions), np.asarray(labels)
    if predicted.ndim != 1 or truth.ndim != 1:
        raise ValueError(f"predictions and labels must be one-dimensional, got {predicted.shape} and {truth.shape}")
    if len(predicted) != len(truth):
        raise ValueError(f"predictions and labels differ in length: {len(predicted)} != {len(truth)}")
    return np.asarray(predicted == truth, dtype=bool)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for ``k`` successes in ``n`` trials; the estimate is ``k / n``."""
    confidence = check_confidence(confidence)
    if n <= 0:
        raise ValueError(f"a proportion needs at least one row, got n == {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and n == {n}, got {k}")
    from scipy.stats import binomtest  # scipy.stats takes a second to import: only where a figure is made

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method=WILSON)
    return Interval(estimate=k / n, low=float(ci.low), high=float(ci.high), confidence=confidence, method=WILSON)


def accuracy_interval(correct: ArrayLike, confidence: float = 0.95) -> Interval:
    """The accuracy of one model on a split, with its Wilson interval.

    ``correct`` has one entry per row (bool, or 0/1): whether the model got that row right.  The estimate is
    the accuracy (share of rows right); ``[low, high]`` is the two-sided interval at ``confidence`` for the
    accuracy the model would have on the population the rows were drawn from.
    """
    rows = as_correct(correct)
    if len(rows) == 0:
        raise ValueError("accuracy_interval: correct is empty (n == 0): an accuracy needs at least one row")
    return wilson_interval(int(rows.sum()), len(rows), confidence)
