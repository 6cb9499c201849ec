"""benchmarks/interop.py's verdict: what makes the Optimum check fail (the run itself is `make interop`)."""

from __future__ import annotations

import pytest

from tests.conftest import load_benchmark

interop = load_benchmark("interop")
CLASSES = ("no", "yes")
OURS = [("yes", 0.9), ("no", 0.7), ("yes", 0.55)]
IDS = [[101, 7, 102], [101, 8, 9, 102], [101, 10, 102]]


def theirs(**changes) -> dict:
    """The pipeline's side as interop_optimum.py writes it, equal to OURS and IDS unless changed."""
    side = {
        "labels": [label for label, _ in OURS],
        "probabilities": [p + 1e-7 for _, p in OURS],
        "input_ids": [list(row) for row in IDS],
    }
    side.update(changes)
    return side


def test_equal_answers_pass_and_say_so():
    passed, line = interop.compare("x", CLASSES, OURS, IDS, theirs(), ["Device set to use cpu"])
    assert passed, line
    assert line == (
        "x: 3/3 rows the same label (no 1, yes 2), probabilities within 1e-07, same token ids on 3/3 rows; no warnings"
    )


@pytest.mark.parametrize(
    "changes, printed, needle",
    [
        ({"labels": ["yes", "yes", "yes"]}, [], "1 labels differ (row 1: latencysolver no p=0.7000, pipeline yes"),
        ({"probabilities": [0.9, 0.7, 0.56]}, [], "probabilities differ by up to 0.01 (> 0.001)"),
        ({"input_ids": [[101, 7, 102], [101, 8, 102], [101, 10, 102]]}, [], "other token ids on 1 rows"),
        ({}, ["Some weights of the model were not initialized"], "1 lines printed while loading or running"),
        ({}, ["The module name  (originally ) is not a valid Python identifier."], "not a valid Python identifier"),
    ],
)
def test_any_difference_or_printed_line_fails(changes, printed, needle):
    passed, line = interop.compare("x", CLASSES, OURS, IDS, theirs(**changes), ["Device set to use cpu", *printed])
    assert not passed
    assert "FAILED" in line and needle in line, line


def test_a_row_missing_on_one_side_is_an_error_not_a_pass():
    with pytest.raises(ValueError):
        interop.compare("x", CLASSES, OURS, IDS, theirs(labels=["yes", "no"]), [])
