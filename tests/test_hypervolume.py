"""The 2-D hypervolume of a front (results/front.py), which the benchmarks compare samplers on."""

from __future__ import annotations

import optuna
import pytest

from latencysolver.results.front import hypervolume, study_hypervolume


def test_hypervolume_of_a_hand_made_front():
    # reference (0.5, 1): a staircase; sliced by speed-up, y in [1, 2] is 0.3 wide, [2, 4] 0.2, [4, 6] 0.1:
    # 0.3*1 + 0.2*2 + 0.1*2 = 0.9
    points = [(0.8, 2.0), (0.7, 4.0), (0.6, 6.0)]
    assert hypervolume(points, (0.5, 1.0)) == pytest.approx(0.9)
    # a dominated point and points at or below the reference change nothing
    assert hypervolume(points + [(0.65, 3.0), (0.5, 9.0), (0.9, 1.0)], (0.5, 1.0)) == pytest.approx(0.9)
    assert hypervolume([(0.9, 3.0)], (0.5, 1.0)) == pytest.approx(0.8)
    assert hypervolume([], (0.5, 1.0)) == 0.0


def test_a_study_that_minimizes_latency_has_no_hypervolume_of_maximized_objectives():
    study = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ValueError, match="minimizes latency_ms"):
        study_hypervolume(study, (0.5, 1.0))
