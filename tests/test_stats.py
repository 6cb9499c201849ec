"""latencysolver.stats against hand computations: the Wilson and Newcombe formulas are written out here, in plain
math, so a change of method in the package (a continuity correction, another phi) shows as a failure."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest

from latencysolver.stats import (
    Interval,
    PairedComparison,
    SeedSummary,
    accuracy_interval,
    correct_of,
    mcnemar_exact_p,
    newcombe_paired_interval,
    paired_difference,
    resolvable_margin,
    standard_error_of_difference,
    summarize,
    wilson_interval,
)

Z95 = 1.959963984540054  # two-sided 95%: Φ⁻¹(0.975)
Z90 = 1.6448536269514722  # two-sided 90%: Φ⁻¹(0.95)


def wilson_by_hand(k: int, n: int, z: float) -> tuple[float, float]:
    """(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)"""
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return (centre - half) / denominator, (centre + half) / denominator


def newcombe_by_hand(a: int, b: int, c: int, d: int, z: float) -> tuple[float, float]:
    """Newcombe (1998, paired) method 10, from the paper's formulas, with its continuity-corrected phi."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_by_hand(a + b, n, z)
    l2, u2 = wilson_by_hand(a + c, n, z)
    product = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if product == 0:
        phi = 0.0
    elif cross > n / 2:
        phi = (cross - n / 2) / math.sqrt(product)
    elif cross >= 0:
        phi = 0.0
    else:
        phi = cross / math.sqrt(product)
    delta = math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    epsilon = math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    theta = p1 - p2
    return theta - delta, theta + epsilon


def rows(a: int, b: int, c: int, d: int) -> tuple[list[bool], list[bool]]:
    """Student and teacher correctness for a table: a both right, b student only, c teacher only, d both wrong.
    Interleaved, so the order of rows is not what the counts come from."""
    pairs = [(True, True)] * a + [(True, False)] * b + [(False, True)] * c + [(False, False)] * d
    order = np.random.default_rng(0).permutation(len(pairs))
    return [pairs[i][0] for i in order], [pairs[i][1] for i in order]


# --- Wilson ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n", "confidence", "z"), [(7, 10, 0.95, Z95), (348, 500, 0.95, Z95), (3, 40, 0.9, Z90)])
def test_wilson_matches_the_closed_form(k, n, confidence, z):
    interval = accuracy_interval([True] * k + [False] * (n - k), confidence)
    low, high = wilson_by_hand(k, n, z)
    assert interval.low == pytest.approx(low, abs=1e-9)
    assert interval.high == pytest.approx(high, abs=1e-9)
    assert interval.estimate == k / n
    assert (interval.confidence, interval.method) == (confidence, "wilson")


def test_wilson_seven_of_ten_in_numbers():
    interval = accuracy_interval([1] * 7 + [0] * 3)
    assert interval.low == pytest.approx(0.396778147461145, abs=1e-9)
    assert interval.high == pytest.approx(0.892208732593699, abs=1e-9)


def test_wilson_edges():
    wrong = accuracy_interval([False] * 10)
    assert wrong.low == 0.0 and wrong.estimate == 0.0
    assert wrong.high == pytest.approx(wilson_by_hand(0, 10, Z95)[1], abs=1e-9) and wrong.high > 0
    right = accuracy_interval([True] * 10)
    assert right.high == 1.0 and right.estimate == 1.0
    assert right.low == pytest.approx(wilson_by_hand(10, 10, Z95)[0], abs=1e-9) and right.low < 1


def test_accuracy_interval_refuses_bad_rows():
    with pytest.raises(ValueError, match="n == 0"):
        accuracy_interval([])
    with pytest.raises(ValueError, match="one-dimensional"):
        accuracy_interval([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="bools or 0/1"):
        accuracy_interval([0, 1, 2])
    with pytest.raises(ValueError, match="confidence"):
        accuracy_interval([1, 0], confidence=95)
    with pytest.raises(ValueError, match="n == 0"):
        wilson_interval(0, 0)


def test_describe_and_round_trip():
    interval = accuracy_interval([1] * 348 + [0] * 152)
    assert interval.describe() == "0.696 [0.654, 0.735]"
    data = json.loads(json.dumps(interval.to_dict()))
    assert Interval.from_dict(data) == interval
    assert all(type(data[key]) is float for key in ("estimate", "low", "high", "confidence"))


def test_an_interval_must_contain_its_estimate():
    with pytest.raises(ValueError, match="does not contain"):
        Interval(estimate=0.9, low=0.1, high=0.5, confidence=0.95, method="wilson")


def test_correct_of():
    assert correct_of([1, 0, 1, 1], np.array([1, 1, 1, 0])).tolist() == [True, False, True, False]
    assert correct_of(["yes", "no"], ["yes", "yes"]).dtype == np.bool_
    with pytest.raises(ValueError, match="differ in length"):
        correct_of([1, 0], [1])


# --- paired: Newcombe, McNemar -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "c", "d"),
    [
        (10, 4, 1, 5),  # ad - bc = 46 > n/2: the corrected phi (46 - 10) / sqrt(...)
        (2, 6, 5, 1),  # ad - bc = -28 < 0: phi uncorrected, negative
        (3, 2, 2, 1),  # ad - bc = -1: just below 0
        (4, 2, 2, 2),  # ad - bc = 4, 0 <= 4 <= n/2 = 5: the correction takes phi to 0
        (5, 0, 3, 0),  # the teacher is right on every row: a margin is 0, phi = 0
        (300, 40, 50, 110),
    ],
)
def test_newcombe_matches_the_hand_computation(a, b, c, d):
    student, teacher = rows(a, b, c, d)
    comparison = paired_difference(student, teacher)
    low, high = newcombe_by_hand(a, b, c, d, Z95)
    interval = comparison.difference_interval
    assert interval.low == pytest.approx(low, abs=1e-9)
    assert interval.high == pytest.approx(high, abs=1e-9)
    assert interval.estimate == pytest.approx((b - c) / (a + b + c + d), abs=1e-15)
    assert interval.method == "newcombe-paired-10"
    assert newcombe_paired_interval(a, b, c, d) == interval


def test_newcombe_phi_branches_in_numbers():
    """The (10, 4, 1, 5) table worked through: Wilson bounds, phi = (46 - 10) / sqrt(14·6·11·9), delta, epsilon."""
    n = 20
    p1, p2 = 14 / n, 11 / n
    l1, u1 = wilson_by_hand(14, n, Z95)
    l2, u2 = wilson_by_hand(11, n, Z95)
    phi = 36 / math.sqrt(14 * 6 * 11 * 9)
    assert phi == pytest.approx(0.394771, abs=1e-6)
    delta = math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    epsilon = math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    interval = newcombe_paired_interval(10, 4, 1, 5)
    assert interval.low == pytest.approx(0.15 - delta, abs=1e-12)
    assert interval.high == pytest.approx(0.15 + epsilon, abs=1e-12)
    # a positive correlation narrows the interval against phi = 0 (two independent accuracies)
    independent = (0.15 - math.hypot(p1 - l1, u2 - p2), 0.15 + math.hypot(u1 - p1, p2 - l2))
    assert independent[0] < interval.low and interval.high < independent[1]


def test_counts_agreement_and_accuracies():
    student = [1, 1, 1, 0, 0, 1, 0, 1]
    teacher = [1, 0, 1, 1, 0, 0, 0, 1]
    comparison = paired_difference(student, teacher)
    assert (comparison.n, comparison.both_correct, comparison.student_only) == (8, 3, 2)
    assert (comparison.teacher_only, comparison.both_wrong, comparison.discordant) == (1, 2, 3)
    assert comparison.student_accuracy == 5 / 8 and comparison.teacher_accuracy == 4 / 8
    assert comparison.difference == pytest.approx(1 / 8)
    assert comparison.agreement == 5 / 8
    # binary labels: both right or both wrong is the same prediction
    labels = np.array([1, 0, 1, 1, 0, 1, 1, 0])
    student_predictions = np.where(np.array(student, dtype=bool), labels, 1 - labels)
    teacher_predictions = np.where(np.array(teacher, dtype=bool), labels, 1 - labels)
    assert np.mean(student_predictions == teacher_predictions) == comparison.agreement
    from_predictions = paired_difference(
        correct_of(student_predictions, labels), correct_of(teacher_predictions, labels)
    )
    assert from_predictions == comparison


def test_mcnemar_by_hand():
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 * 0.5**5, abs=1e-12)  # 0.0625
    assert mcnemar_exact_p(0, 5) == pytest.approx(0.0625, abs=1e-12)
    assert mcnemar_exact_p(3, 1) == pytest.approx((1 + 4 + 4 + 1) / 16, abs=1e-12)  # P(X<=1) + P(X>=3), n=4
    assert mcnemar_exact_p(2, 2) == 1.0
    assert mcnemar_exact_p(0, 0) == 1.0
    student, teacher = rows(4, 5, 0, 1)
    assert paired_difference(student, teacher).mcnemar_p == pytest.approx(0.0625, abs=1e-12)


def test_identical_models():
    correct = [True] * 35 + [False] * 15
    comparison = paired_difference(correct, correct)
    assert comparison.difference == 0.0 and comparison.discordant == 0
    assert comparison.difference_interval.contains(0.0)
    assert comparison.difference_interval.low < 0 < comparison.difference_interval.high
    assert comparison.mcnemar_p == 1.0 and comparison.agreement == 1.0


def test_paired_refuses_bad_rows():
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="n == 0"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="student_correct"):
        paired_difference([1, 3], [1, 0])


def test_one_sided_bound_is_the_two_sided_low_end():
    student, teacher = rows(300, 40, 50, 110)
    comparison = paired_difference(student, teacher)
    assert comparison.lower_bound(0.95) == paired_difference(student, teacher, confidence=0.90).difference_interval.low
    assert comparison.lower_bound(0.975) == pytest.approx(comparison.difference_interval.low, abs=1e-12)
    assert comparison.lower_bound(0.95) == pytest.approx(newcombe_by_hand(300, 40, 50, 110, Z90)[0], abs=1e-9)
    with pytest.raises(ValueError, match="above 0.5"):
        comparison.lower_bound(0.4)


def test_is_noninferior_flips_at_the_margin():
    student, teacher = rows(300, 40, 50, 110)
    comparison = paired_difference(student, teacher)
    bound = comparison.lower_bound(0.95)
    assert -0.07 < bound < -0.02  # difference -0.02, SE about sqrt(0.18 / 500) = 0.019
    assert comparison.is_noninferior(-bound + 1e-6)
    assert not comparison.is_noninferior(-bound - 1e-6)
    assert not comparison.is_noninferior(0.0)
    with pytest.raises(ValueError, match="margin"):
        comparison.is_noninferior(-0.01)


def test_paired_round_trip_and_describe():
    student, teacher = rows(300, 40, 50, 110)
    comparison = paired_difference(student, teacher)
    data = json.loads(json.dumps(comparison.to_dict()))
    assert PairedComparison.from_dict(data) == comparison
    assert data["both_wrong"] == 110 and data["difference"] == pytest.approx(-0.02)
    assert data["student_accuracy"] == 0.68 and data["teacher_accuracy"] == 0.7 and data["agreement"] == 0.82
    assert comparison.describe().startswith("-0.020 [")
    assert "b=40, c=50" in comparison.describe()


# --- margins, seeds ---------------------------------------------------------------------------------------------


def test_resolvable_margin():
    assert standard_error_of_difference(0.18, 500) == pytest.approx(math.sqrt(0.00036), abs=1e-15)
    assert standard_error_of_difference(0.18, 500) == pytest.approx(0.0190, abs=1e-4)
    assert resolvable_margin(0.18, 500) == pytest.approx(Z90 * math.sqrt(0.18 / 500), abs=1e-12)
    assert resolvable_margin(0.18, 500) == pytest.approx(0.0312, abs=1e-4)
    assert resolvable_margin(0.18, 2000) == pytest.approx(resolvable_margin(0.18, 500) / 2, abs=1e-12)
    with pytest.raises(ValueError, match="discordant_share"):
        standard_error_of_difference(1.5, 500)
    with pytest.raises(ValueError, match="n must be"):
        resolvable_margin(0.18, 0)


def test_summarize():
    values = [0.672, 0.684, 0.696]
    summary = summarize(values)
    assert summary.n == 3
    assert summary.mean == pytest.approx(statistics.mean(values), abs=1e-15)
    assert summary.sd == pytest.approx(statistics.stdev(values), abs=1e-15)
    assert (summary.min, summary.max) == (0.672, 0.696)
    assert summary.describe(n=True) == "0.684 ± 0.012 (n=3)"
    assert summary.describe(scale=100, digits=1, suffix="%") == "68.4% ± 1.2%"
    assert SeedSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary


def test_summarize_edges():
    one = summarize([0.7])
    assert (one.n, one.mean, one.sd) == (1, 0.7, 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([0.7, float("nan")])


def test_the_seed_pooled_difference_against_a_hand_computation():
    from latencysolver.stats import seed_pooled_difference

    teacher = [1, 1, 0, 0]
    seeds = [[1, 0, 1, 0], [1, 1, 1, 0]]
    # per row: share of seeds right minus the teacher: [0, -0.5, 1, 0]; mean 0.125 (= mean of 0 and +0.25, each
    # seed's own difference); sample sd sqrt(1.1875 / 3) = 0.629153; half-width 1.959964 * 0.629153 / 2
    interval = seed_pooled_difference(seeds, teacher)
    assert interval.estimate == pytest.approx(0.125)
    half = 1.959964 * (1.1875 / 3) ** 0.5 / 2
    assert interval.low == pytest.approx(0.125 - half, abs=1e-6) and interval.high == pytest.approx(
        0.125 + half, abs=1e-6
    )
    assert interval.method == "seed-pooled-paired-normal"
    # every seed exactly the teacher: a zero difference with a zero-width interval
    same = seed_pooled_difference([teacher, teacher, teacher], teacher)
    assert (same.low, same.estimate, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="one or more seeds"):
        seed_pooled_difference([[1, 0]], teacher)


# --- rank_agreement: Spearman's rho of two budgets' scores, Fisher z with Bonett-Wright's standard error ---


def test_rank_agreement_matches_the_hand_computed_rho_and_interval():
    from latencysolver.stats import rank_agreement

    # ranks differ by (-1, 1, -1, 1, 0): rho = 1 - 6·4 / (5·24) = 0.8
    agreement = rank_agreement([0.61, 0.62, 0.63, 0.64, 0.65], [0.70, 0.60, 0.80, 0.75, 0.90])
    rho = 1 - 6 * 4 / (5 * (25 - 1))
    se = math.sqrt((1 + rho**2 / 2) / (5 - 3))
    assert agreement.n == 5
    assert agreement.rho == pytest.approx(0.8)
    assert agreement.interval is not None
    assert agreement.interval.low == pytest.approx(math.tanh(math.atanh(rho) - Z95 * se))  # -0.457
    assert agreement.interval.high == pytest.approx(math.tanh(math.atanh(rho) + Z95 * se))  # 0.991
    assert agreement.interval.low == pytest.approx(-0.4571, abs=1e-4)
    assert "+0.80 [-0.46, +0.99] over 5 recipes" in agreement.describe()


def test_rank_agreement_ties_take_average_ranks_and_reversal_is_minus_one():
    from latencysolver.stats import rank_agreement

    # first: ranks 1.5, 1.5, 3, 4; second: 1, 2, 3, 4 -> Pearson of the ranks
    tied = rank_agreement([0.5, 0.5, 0.6, 0.7], [0.1, 0.2, 0.3, 0.4])
    assert tied.rho == pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])
    reversed_ = rank_agreement([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert reversed_.rho == pytest.approx(-1.0)
    assert reversed_.interval is not None and reversed_.interval.width == 0


def test_rank_agreement_refuses_too_few_or_unpaired_scores_and_says_when_undefined():
    from latencysolver.stats import rank_agreement

    with pytest.raises(ValueError, match="at least 4 recipes, got 3"):
        rank_agreement([1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="4 scores against 5"):
        rank_agreement([1, 2, 3, 4], [1, 2, 3, 4, 5])
    flat = rank_agreement([0.6, 0.6, 0.6, 0.6], [0.1, 0.2, 0.3, 0.4])
    assert flat.rho is None and "undefined over 4 recipes" in flat.describe()
