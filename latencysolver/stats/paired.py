"""A student against the teacher on the same validation rows: paired, so the shared rows' difficulty cancels.

Both models are scored on the same ``n`` rows.  Per row each is right or wrong, which gives the 2×2 table::

                        teacher right    teacher wrong
    student right       a (both_correct)  b (student_only)
    student wrong       c (teacher_only)  d (both_wrong)

The student's accuracy is ``(a + b) / n``, the teacher's ``(a + c) / n``, and the difference
``(b - c) / n`` depends only on the discordant rows ``b + c``.  Two models that agree on most rows have a
difference far better determined than two independent accuracies would suggest: the rows both get right (or
both get wrong) carry no information about which is better.

The difference's interval (``newcombe_paired_interval``) is Newcombe's method 10 (Newcombe RG, "Improved
confidence intervals for the difference between binomial proportions based on paired data", Statistics in
Medicine 17:2635-2650, 1998): the hybrid score ("square-and-add") interval.  With ``p1, p2`` the two
accuracies, ``[l1, u1]`` and ``[l2, u2]`` their Wilson intervals (``intervals.py``) and ``θ = p1 - p2``::

    δ = sqrt((p1 - l1)² - 2φ(p1 - l1)(u2 - p2) + (u2 - p2)²)
    ε = sqrt((u1 - p1)² - 2φ(u1 - p1)(p2 - l2) + (p2 - l2)²)
    interval = [θ - δ, θ + ε]

``φ`` is the correlation of the two models' right/wrong over the rows (the phi coefficient of the table) with
Newcombe's continuity correction: ``(ad - bc - n/2) / sqrt((a+b)(c+d)(a+c)(b+d))`` when ``ad - bc > n/2``,
``0`` when ``0 <= ad - bc <= n/2``, ``(ad - bc) / sqrt(...)`` when ``ad - bc < 0``, and ``0`` when any margin
``a+b, c+d, a+c, b+d`` is zero (one model all right or all wrong: the product is zero).  The same rule is in
Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), chapter 8.  With ``φ = 0``
the interval is Newcombe's interval for independent proportions; the positive correlation of two models that
agree narrows it.

The test (``mcnemar_exact_p``) is McNemar's (McNemar Q, "Note on the sampling error of the difference between
correlated proportions or percentages", Psychometrika 12:153-157, 1947) in its exact form: under "neither model
is better" each discordant row is the student's with probability 1/2, so ``b`` is Binomial(b + c, 1/2) and the
p-value is the two-sided binomial test.  Dietterich ("Approximate statistical tests for comparing supervised
classification learning algorithms", Neural Computation 10:1895-1923, 1998) recommends McNemar's test for two
classifiers scored on one test set.

Non-inferiority: the student is non-inferior at margin ``m`` (in accuracy, e.g. 0.02 = 2 points) when the
one-sided lower confidence bound of ``θ`` is above ``-m``.  The one-sided bound at confidence ``c`` is the low
end of the two-sided interval at ``2c - 1``: one-sided 95% is the low end of the two-sided 90% interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from numpy.typing import ArrayLike

from latencysolver.stats.intervals import Interval, as_correct, check_confidence, wilson_interval

NEWCOMBE_PAIRED = "newcombe-paired-10"


def _phi(a: int, b: int, c: int, d: int) -> float:
    """Newcombe's continuity-corrected phi coefficient of the 2×2 table (0 when a margin is empty)."""
    product = (a + b) * (c + d) * (a + c) * (b + d)
    if product == 0:
        return 0.0
    cross = a * d - b * c
    n = a + b + c + d
    if cross > n / 2:
        return (cross - n / 2) / math.sqrt(product)
    if cross >= 0:
        return 0.0
    return cross / math.sqrt(product)


def _check_counts(a: int, b: int, c: int, d: int) -> None:
    if min(a, b, c, d) < 0:
        raise ValueError(f"the counts of a 2x2 table cannot be negative, got {(a, b, c, d)}")
    if a + b + c + d == 0:
        raise ValueError("a paired comparison needs at least one row, got n == 0")


def newcombe_paired_interval(
    both_correct: int, student_only: int, teacher_only: int, both_wrong: int, confidence: float = 0.95
) -> Interval:
    """Newcombe's (1998) method-10 interval for ``student accuracy - teacher accuracy`` on paired rows.

    The arguments are the cells a, b, c, d of the table in the module docstring; the estimate is
    ``(b - c) / n`` and ``[low, high]`` the two-sided interval at ``confidence``.
    """
    a, b, c, d = both_correct, student_only, teacher_only, both_wrong
    _check_counts(a, b, c, d)
    n = a + b + c + d
    first, second = wilson_interval(a + b, n, confidence), wilson_interval(a + c, n, confidence)
    p1, l1, u1 = first.estimate, first.low, first.high
    p2, l2, u2 = second.estimate, second.low, second.high
    phi = _phi(a, b, c, d)
    delta = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    epsilon = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    theta = (b - c) / n
    return Interval(
        estimate=theta,
        low=max(theta - delta, -1.0),
        high=min(theta + epsilon, 1.0),
        confidence=first.confidence,
        method=NEWCOMBE_PAIRED,
    )


def mcnemar_exact_p(student_only: int, teacher_only: int) -> float:
    """Exact two-sided McNemar p-value: ``student_only`` among the discordant rows against Binomial(·, 1/2).

    1.0 when there are no discordant rows (nothing tells the two models apart)."""
    if min(student_only, teacher_only) < 0:
        raise ValueError(f"discordant counts cannot be negative, got {student_only} and {teacher_only}")
    discordant = student_only + teacher_only
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest  # scipy.stats takes a second to import: only where a figure is made

    return min(float(binomtest(student_only, discordant, 0.5).pvalue), 1.0)


@dataclass(frozen=True)
class PairedComparison:
    """A student and the teacher scored on the same ``n`` rows.

    The counts are the cells of the table in the module docstring: ``both_correct`` (a), ``student_only`` (b:
    the student right, the teacher wrong), ``teacher_only`` (c: the reverse); ``both_wrong`` (d) is the rest.
    ``difference_interval`` is Newcombe's method-10 two-sided interval for ``difference`` (student accuracy
    minus teacher accuracy, in accuracy units: 0.01 is one point); ``mcnemar_p`` the exact McNemar p-value for
    "the two models are equally accurate".
    """

    n: int
    both_correct: int
    student_only: int
    teacher_only: int
    difference_interval: Interval
    mcnemar_p: float

    def __post_init__(self) -> None:
        _check_counts(self.both_correct, self.student_only, self.teacher_only, self.both_wrong)

    @property
    def both_wrong(self) -> int:
        return self.n - self.both_correct - self.student_only - self.teacher_only

    @property
    def discordant(self) -> int:
        """Rows where exactly one of the two models is right: the only rows that tell them apart."""
        return self.student_only + self.teacher_only

    @property
    def student_accuracy(self) -> float:
        return (self.both_correct + self.student_only) / self.n

    @property
    def teacher_accuracy(self) -> float:
        return (self.both_correct + self.teacher_only) / self.n

    @property
    def difference(self) -> float:
        """Student accuracy minus teacher accuracy (negative: the student is worse)."""
        return (self.student_only - self.teacher_only) / self.n

    @property
    def agreement(self) -> float:
        """Share of rows where both models are right or both are wrong.

        For a binary task (BoolQ: yes/no) that is also the share of rows where the two give the same
        prediction: two wrong answers to a yes/no question are the same answer.  (With more classes two wrong
        answers can differ, and the two rates part.)"""
        return (self.both_correct + self.both_wrong) / self.n

    @property
    def confidence(self) -> float:
        """The two-sided confidence of ``difference_interval``."""
        return self.difference_interval.confidence

    def interval(self, confidence: float) -> Interval:
        """The two-sided Newcombe interval of the difference at another ``confidence``."""
        return newcombe_paired_interval(
            self.both_correct, self.student_only, self.teacher_only, self.both_wrong, confidence
        )

    def lower_bound(self, confidence: float = 0.95) -> float:
        """One-sided lower confidence bound of ``difference`` at ``confidence``.

        It is the low end of the two-sided interval at ``2 * confidence - 1`` (one-sided 95% = two-sided 90%);
        that level is rounded to 12 decimals so that 0.95 gives 0.90 exactly, not 0.8999999999999999."""
        confidence = check_confidence(confidence)
        if confidence <= 0.5:
            raise ValueError(f"a one-sided confidence must be above 0.5, got {confidence!r}")
        return self.interval(round(2 * confidence - 1, 12)).low

    def is_noninferior(self, margin: float, confidence: float = 0.95) -> bool:
        """Whether the student is non-inferior to the teacher at ``margin``: ``lower_bound(confidence) > -margin``.

        ``margin`` is in accuracy units (0.02 = two points) and at least 0; at 0 this is a superiority test."""
        if not (math.isfinite(margin) and margin >= 0):
            raise ValueError(f"a non-inferiority margin must be a finite number >= 0, got {margin!r}")
        return self.lower_bound(confidence) > -margin

    def describe(self) -> str:
        """``"-0.020 [-0.057, +0.017] vs teacher (b=40, c=50, McNemar p=0.343)"``: 500 rows, 18% discordant."""
        interval = self.difference_interval
        return (
            f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}] vs teacher "
            f"(b={self.student_only}, c={self.teacher_only}, McNemar p={self.mcnemar_p:.3g})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The counts, the interval and the p-value, with the accuracies, difference and agreement derived from
        the counts written out for readers of the JSON (``from_dict`` reads the counts)."""
        return {
            "n": self.n,
            "both_correct": self.both_correct,
            "student_only": self.student_only,
            "teacher_only": self.teacher_only,
            "both_wrong": self.both_wrong,
            "student_accuracy": self.student_accuracy,
            "teacher_accuracy": self.teacher_accuracy,
            "difference": self.difference,
            "agreement": self.agreement,
            "difference_interval": self.difference_interval.to_dict(),
            "mcnemar_p": float(self.mcnemar_p),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedComparison:
        """The comparison ``to_dict`` wrote."""
        return cls(
            n=int(data["n"]),
            both_correct=int(data["both_correct"]),
            student_only=int(data["student_only"]),
            teacher_only=int(data["teacher_only"]),
            difference_interval=Interval.from_dict(data["difference_interval"]),
            mcnemar_p=float(data["mcnemar_p"]),
        )


def paired_difference(
    student_correct: ArrayLike, teacher_correct: ArrayLike, confidence: float = 0.95
) -> PairedComparison:
    """Compare a student with the teacher on the same rows.

    Each argument has one entry per row, in the same order (bools, or 0/1: whether that model got the row
    right; ``correct_of(predictions, labels)`` makes one from predictions).  ``confidence`` is the two-sided
    level of ``difference_interval``.
    """
    student = as_correct(student_correct, "student_correct")
    teacher = as_correct(teacher_correct, "teacher_correct")
    if len(student) != len(teacher):
        raise ValueError(f"student and teacher rows differ in length: {len(student)} != {len(teacher)}")
    if len(student) == 0:
        raise ValueError("paired_difference: no rows (n == 0)")
    a = int((student & teacher).sum())
    b = int((student & ~teacher).sum())
    c = int((~student & teacher).sum())
    d = len(student) - a - b - c
    return PairedComparison(
        n=len(student),
        both_correct=a,
        student_only=b,
        teacher_only=c,
        difference_interval=newcombe_paired_interval(a, b, c, d, confidence),
        mcnemar_p=mcnemar_exact_p(b, c),
    )
